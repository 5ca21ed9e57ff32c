"""The files a profile writes beside ``profile.json``, each atomically, and strict JSON."""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import files


def json_safe(value: Any) -> Any:
    """Replace NaN/inf by ``None`` so the file is strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return json_safe(value.item())
    return value


def write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    files.write_bytes(path, buffer.getvalue().encode())


def write_confusion(path: Path, confusion: np.ndarray, class_names: Sequence[str]) -> None:
    """``confusion_matrix.csv``: rows are true classes, columns predictions, both named."""
    rows = [[name, *map(int, counts)] for name, counts in zip(class_names, confusion, strict=True)]
    write_csv(path, ["true\\predicted", *class_names], rows)


def save_state_dict(model: nn.Module, path: Path) -> int:
    """``torch.save`` the state dict; its file size is the study's "storage size"."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    files.write_bytes(path, buffer.getvalue())
    return os.path.getsize(path)
