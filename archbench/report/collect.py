"""Reading run directories back: what the trainer and profiler left in each."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import files
from ..errors import ArchbenchError
from ..train import rundir


@dataclass(frozen=True)
class RunRecord:
    """One run directory as the report sees it."""

    path: Path
    config: dict
    result: dict
    profile: dict | None
    metrics: list[dict]

    @property
    def arch(self) -> str:
        return self.config["train"]["arch"]

    @property
    def dataset(self) -> str:
        return self.config["train"]["dataset"]

    @property
    def status(self) -> str:
        return self.result.get("status", "unknown")

    @property
    def num_classes(self) -> int:
        return int(self.config.get("data", {}).get("num_classes", 0))

    @property
    def complete(self) -> bool:
        return self.status == "complete"


def find_run_dirs(runs_dir: Path) -> list[Path]:
    """Every run directory (one holding ``config.json``) under ``runs_dir``, sorted by path."""
    runs_dir = Path(runs_dir).expanduser()
    if not runs_dir.is_dir():
        raise ArchbenchError(f"runs directory {runs_dir} does not exist")
    found = sorted(p.parent for p in runs_dir.rglob(rundir.CONFIG))
    if not found:
        raise ArchbenchError(f"no run directories under {runs_dir} (none holds {rundir.CONFIG})")
    return found


def _read_metrics(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, encoding="utf-8") as stream:
        return [
            {key: float(value) if value not in ("", None) else None for key, value in row.items()}
            for row in csv.DictReader(stream)
        ]


def collect_runs(paths: Iterable[Path]) -> list[RunRecord]:
    """Read each run directory; a broken one is an error naming it, not a silent omission."""
    records = []
    for path in paths:
        info = rundir.read_run(path)
        profile_path = info.path / rundir.PROFILE
        try:
            profile = files.read_json(profile_path) if profile_path.is_file() else None
        except ValueError as error:
            raise ArchbenchError(f"{profile_path} is not valid JSON ({error})") from None
        records.append(
            RunRecord(
                path=info.path,
                config=info.config,
                result=info.result,
                profile=profile,
                metrics=_read_metrics(info.path / rundir.METRICS),
            )
        )
    if not records:
        raise ArchbenchError("no runs given")
    return records


def nested_get(mapping: dict | None, *keys: str) -> Any:
    """``mapping[k1][k2]...``, or ``None`` where any level is missing (profiles vary)."""
    for key in keys:
        if not isinstance(mapping, dict):
            return None
        mapping = mapping.get(key)
    return mapping
