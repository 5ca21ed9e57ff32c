"""Reading run directories back: what the trainer and profiler left in each."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ArchbenchError
from ..train import TrainConfig, rundir
from ..train.config import DEFAULT_MAX_EPOCHS as STUDY_MAX_EPOCHS
from ..train.protocol import recorded_protocol


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
    def task(self) -> str:
        return self.config["train"].get("task", "classification")

    @property
    def status(self) -> str:
        return self.result.get("status", "unknown")

    @property
    def num_classes(self) -> int:
        return int(self.config.get("data", {}).get("num_classes", 0))

    @property
    def complete(self) -> bool:
        return self.status == "complete"

    @property
    def protocol(self) -> dict:
        """Schedule, budget and label (:mod:`archbench.train.protocol`); old runs: plateau."""
        return recorded_protocol(self.config)

    @property
    def budget_epochs(self) -> int | None:
        """The epoch budget a run stopped at before its schedule's natural stop, else None.

        Budgeted = a linear decay (its budget is its schedule), or ``max_epochs`` below the
        study's 200, all of them run, and (for the plateau schedules) fewer LR drops than the
        schedule stops at.
        """
        train, result = self.config["train"], self.result
        max_epochs, epochs = train.get("max_epochs"), result.get("epochs_run")
        if self.protocol.get("budget_epochs"):
            return int(self.protocol["budget_epochs"])
        if not max_epochs or max_epochs >= STUDY_MAX_EPOCHS or (epochs or 0) < max_epochs:
            return None
        schedule = TrainConfig.from_dict(train).make_schedule()
        max_drops = getattr(getattr(schedule, "config", None), "max_drops", None)
        if max_drops is not None and result.get("lr_drops", 0) >= max_drops:
            return None
        return int(max_epochs)

    @property
    def train_seconds(self) -> float | None:
        """Wall seconds of all training epochs (``metrics.csv``'s ``epoch_seconds`` summed)."""
        seconds = [row.get("epoch_seconds") for row in self.metrics]
        return float(sum(seconds)) if seconds and None not in seconds else None

    @property
    def threads(self) -> int | None:
        return self.config["train"].get("threads") or nested_get(
            self.config, "system", "torch_threads"
        )


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
    """Per-epoch rows of ``metrics.csv`` (none if absent: the report then has no curves)."""
    if not path.is_file():
        return []
    try:
        with open(path, encoding="utf-8") as stream:
            return [
                {key: _number(value) for key, value in row.items() if key is not None}
                for row in csv.DictReader(stream)
            ]
    except (OSError, ValueError, csv.Error) as error:
        raise ArchbenchError(
            f"{path} is corrupt or truncated ({error}); remove it to report the run without "
            "its training curves (a resumed run rewrites it after its next epoch)"
        ) from None


def _number(value: str | None) -> float | None:
    return float(value) if value not in ("", None) else None


def collect_runs(paths: Iterable[Path]) -> list[RunRecord]:
    """Read each run directory; a broken one is an error naming it, not a silent omission."""
    records = []
    for path in paths:
        info = rundir.read_run(path)
        profile_path = info.path / rundir.PROFILE
        profile = None
        if profile_path.is_file():
            profile = rundir.read_json_file(profile_path, rundir.profile_remedy(info.path))
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
