"""Reading a run directory's files in tests: its per-epoch records, and every file's hash."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

from archbench.train import rundir as runs

TIMING_COLUMNS = {"epoch_seconds", "images_per_second"}  # differ between equal runs


def read_metrics(run_dir: Path) -> list[dict]:
    """``metrics.csv`` without its timing columns: what must match between two equal runs."""
    with open(run_dir / runs.METRICS) as stream:
        return [
            {k: v for k, v in row.items() if k not in TIMING_COLUMNS}
            for row in csv.DictReader(stream)
        ]


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with its content hash, to prove nothing was touched."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }
