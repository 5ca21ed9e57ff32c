"""What a run leaves for people to read: ``train.log`` lines and ``metrics.csv`` rows."""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path

from rich.console import Console

from .. import files
from .schedule import Action

METRIC_COLUMNS = (
    "epoch",
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "test_loss",
    "test_acc",
    "lr",
    "lr_drops",
    "epoch_seconds",
    "images_per_second",
)
# Multi-label runs watch mAP (which selects best.pt), Hamming error and micro F1 instead.
MULTILABEL_METRIC_COLUMNS = (
    "epoch",
    "train_loss",
    "train_hamming",
    *(
        f"{split}_{name}"
        for split in ("val", "test")
        for name in ("loss", "map", "hamming", "micro_f1")
    ),
    "lr",
    "lr_drops",
    "epoch_seconds",
    "images_per_second",
)


class RunLog:
    """Lines for the person (console, unless quiet) and for the record (``train.log``)."""

    def __init__(self, path: Path, console: Console, quiet: bool) -> None:
        self.path, self.console, self.quiet = path, console, quiet

    def __call__(self, message: str) -> None:
        self.record(message)
        if not self.quiet:
            self.console.print(message, markup=False, highlight=False, soft_wrap=True)

    def record(self, message: str) -> None:
        """Into ``train.log`` only: what is kept for later but not shown (a traceback)."""
        append_log(self.path, message)


def append_log(path: Path, message: str) -> None:
    """One time-stamped entry at the end of a ``train.log`` (several lines are one entry)."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    with open(path, "a", encoding="utf-8") as stream:
        stream.write(f"{stamp} {message}\n")


def write_metrics(path: Path, history: list[dict], task: str = "classification") -> None:
    """``metrics.csv``: one row per epoch, the task's columns whatever the run watched."""
    columns = MULTILABEL_METRIC_COLUMNS if task == "multilabel" else METRIC_COLUMNS
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for row in history:
        writer.writerow({key: _csv_value(row.get(key)) for key in columns})
    files.write_text(path, buffer.getvalue())


def _csv_value(value):
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


_FIGURES = ("acc", "map", "hamming")  # what an epoch line shows besides the loss


def epoch_line(row: dict, max_epochs: int, action: Action) -> str:
    parts = [
        f"epoch {row['epoch']:>3}/{max_epochs}",
        f"train_loss {row['train_loss']:.4f}",
    ]
    parts += [
        f"train_{name} {row[f'train_{name}']:.4f}" for name in _FIGURES if f"train_{name}" in row
    ]
    for split in ("val", "test"):
        if f"{split}_loss" in row:
            parts.append(f"{split}_loss {row[f'{split}_loss']:.4f}")
            parts += [
                f"{split}_{name} {row[f'{split}_{name}']:.4f}"
                for name in _FIGURES
                if f"{split}_{name}" in row
            ]
    parts += [f"lr {row['lr']:.2e}", f"{row['images_per_second']:.0f} img/s"]
    if action is Action.DROP_LR:
        parts.append("-> lr drop")
    elif action is Action.STOP:
        parts.append("-> final plateau, stopping")
    return "  ".join(parts)
