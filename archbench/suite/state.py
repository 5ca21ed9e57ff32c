"""``suite.json``: the plan and where each of its runs stands."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .. import files
from ..errors import ArchbenchError
from ..train import rundir
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
    # One record per finished attempt: its number, status, reason if it failed, and on Ray the
    # node it ran on ({"id", "hostname"}): why a run was retried, and where.
    attempt_log: list[dict] = field(default_factory=list)

    @property
    def node(self) -> dict | None:
        """The Ray node of the latest attempt that reported one (None for local runs)."""
        return next((a["node"] for a in reversed(self.attempt_log) if a.get("node")), None)


class SuiteState:
    """``suite.json``: the plan and where each run stands, rewritten atomically on each change."""

    def __init__(self, suite_dir: Path, name: str, entries: Sequence[SuiteEntry]) -> None:
        self.suite_dir, self.name = suite_dir, name
        self.path = suite_dir / SUITE_FILE
        planned = {e.key: EntryState(e.key, e.arch, e.dataset, dict(e.overrides)) for e in entries}
        if self.path.is_file():
            saved = _read_saved_entries(self.path)
            saved_plan = {k: (v.arch, v.dataset, v.overrides) for k, v in saved.items()}
            new_plan = {k: (v.arch, v.dataset, v.overrides) for k, v in planned.items()}
            if saved_plan != new_plan:
                raise ArchbenchError(
                    f"{suite_dir} holds a suite with a different plan ({len(saved_plan)} runs); "
                    "rerun its own command or choose another --runs-dir"
                )
            planned = saved
        self.entries = planned
        self.save()

    def save(self) -> None:
        files.write_json(
            self.path,
            {"name": self.name, "entries": {k: asdict(v) for k, v in self.entries.items()}},
        )


def _read_saved_entries(path: Path) -> dict[str, EntryState]:
    """The entries of an existing ``suite.json``, or one line on what is damaged and what to do."""
    remedy = (
        "restore it, or remove it and rerun the command "
        "(the plan then starts afresh and trains its runs again)"
    )
    saved = rundir.read_json_file(path, remedy)
    try:
        return {key: EntryState(**values) for key, values in saved["entries"].items()}
    except (KeyError, TypeError, AttributeError) as error:
        raise ArchbenchError(
            f"{path} is corrupt ({type(error).__name__}: {error}); {remedy}"
        ) from None
