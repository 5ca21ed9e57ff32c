"""``suite.json``: the plan and where each of its runs stands."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from .. import files
from ..errors import ArchbenchError
from .plan import SuiteEntry

SUITE_FILE = "suite.json"


@dataclass
class EntryState:
    """Where one planned run stands; saved in ``suite.json``."""

    key: str
    arch: str
    dataset: str
    overrides: dict
    status: str = "queued"  # queued | complete | failed | interrupted
    run_dir: str | None = None
    attempts: int = 0
    error: str | None = None


class SuiteState:
    """``suite.json``: the plan and where each run stands, rewritten atomically on each change."""

    def __init__(self, suite_dir: Path, name: str, entries: Sequence[SuiteEntry]) -> None:
        self.suite_dir, self.name = suite_dir, name
        self.path = suite_dir / SUITE_FILE
        planned = {e.key: EntryState(e.key, e.arch, e.dataset, dict(e.overrides)) for e in entries}
        if self.path.is_file():
            saved = files.read_json(self.path)
            saved_plan = {
                k: (v["arch"], v["dataset"], v["overrides"]) for k, v in saved["entries"].items()
            }
            new_plan = {k: (v.arch, v.dataset, v.overrides) for k, v in planned.items()}
            if saved_plan != new_plan:
                raise ArchbenchError(
                    f"{suite_dir} holds a suite with a different plan ({len(saved_plan)} runs); "
                    "rerun its own command or choose another --runs-dir"
                )
            planned = {k: EntryState(**v) for k, v in saved["entries"].items()}
        self.entries = planned
        self.save()

    def save(self) -> None:
        files.write_json(
            self.path,
            {"name": self.name, "entries": {k: asdict(v) for k, v in self.entries.items()}},
        )
