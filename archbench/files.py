"""Atomic file writes: a reader (or a crash) never sees half a checkpoint or half a JSON file."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # what open() would give; mkstemp's 0600 would hide reports


def _atomic(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(tmp_name, _FILE_MODE)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)


def fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable: without it a power loss can undo the rename
    (the file's data is synced, its new name is not). A no-op where directories cannot be
    opened (Windows)."""
    try:
        handle = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass  # some file systems refuse fsync on a directory; the rename itself stands
    finally:
        os.close(handle)


def remove_stale_temporaries(directory: Path) -> list[Path]:
    """Delete the temporary files a killed writer left in ``directory`` (``.NAME.*.tmp``).

    Only for a directory this process holds (:mod:`archbench.locks`): another live writer's
    temporary file would be taken from under it.
    """
    removed = []
    for stale in Path(directory).glob(".*.tmp"):
        if stale.is_file():
            stale.unlink(missing_ok=True)
            removed.append(stale)
    return sorted(removed)


def write_bytes(path: Path, data: bytes) -> None:
    _atomic(path, lambda stream: stream.write(data))


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, default=str) + "\n")


def torch_save(obj: Any, path: Path) -> None:
    _atomic(path, lambda stream: torch.save(obj, stream))


def read_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as stream:
        return json.load(stream)
