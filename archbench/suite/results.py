"""A plan whose results accumulate in a repository: train what is not committed yet, one entry
at a time, copy each completed run in, and report the committed runs with the rest pending.

Each entry trains in its own suite directory under the work directory (outside the repository,
so interrupted runs resume there), which keeps the suite's resume and retry rules while the
plan shrinks day by day as runs are committed.
"""

from __future__ import annotations

import fnmatch
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from rich.console import Console

from ..errors import ArchbenchError
from ..profile import ProfileConfig
from ..report import collect_runs, write_report
from ..train import rundir
from .committed import (
    RunIdentity,
    committed_runs,
    copy_in,
    entry_identity,
    park,
    restore,
)
from .plan import SuiteEntry
from .run import run_suite


@dataclass(frozen=True)
class PlannedRun:
    """A plan entry with its identity and the stable name of its folders."""

    entry: SuiteEntry
    identity: RunIdentity

    @property
    def name(self) -> str:
        """``squeezenet_dsc-cifar10-linear15-s0``: the same whether the data comes from the
        archive or the JPEG folder (unlike the suite key)."""
        i = self.identity
        return f"{rundir.slug(i.arch)}-{i.dataset}-{i.tag}-s{i.seed}"

    def matches(self, patterns: str) -> bool:
        wanted = [p.strip() for p in patterns.split(",") if p.strip()]
        return any(fnmatch.fnmatchcase(n, p) for n in (self.name, self.entry.key) for p in wanted)


def planned_runs(entries: Sequence[SuiteEntry]) -> list[PlannedRun]:
    runs = [PlannedRun(e, entry_identity(e)) for e in entries]
    names = [r.name for r in runs]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ArchbenchError(f"the plan has the same run twice: {', '.join(twice)}")
    return runs


def select(runs: list[PlannedRun], only: str | None) -> list[PlannedRun]:
    """The runs ``--only`` names (names or suite keys, wildcards, comma-separated)."""
    if not only:
        return runs
    chosen = [r for r in runs if r.matches(only)]
    if not chosen:
        raise ArchbenchError(
            f"--only {only!r} names no plan entry; entries: {', '.join(r.name for r in runs)}"
        )
    return chosen


def run_plan(
    runs: Sequence[PlannedRun],
    results_dir: Path,
    work_dir: Path,
    *,
    parked_dir: Path | None = None,
    profile_config: ProfileConfig = ProfileConfig(),  # noqa: B008 (frozen)
    retries: int = 1,
    console: Console | None = None,
    quiet: bool = False,
) -> int:
    """Train every run not committed yet, copying each into ``results_dir`` when it completes.

    Returns the suite's exit code: 130 when interrupted (a plateau run is parked under
    ``parked_dir`` if given and small enough), 1 when a run failed, else 0.
    """
    console = console or Console()
    say = (lambda line: None) if quiet else (lambda line: console.print(line, highlight=False))
    committed = committed_runs(results_dir)
    for run in runs:
        if run.identity in committed:
            say(f"committed already: {run.name} ({committed[run.identity]})")
            continue
        suite_dir = Path(work_dir) / run.name
        parked = Path(parked_dir) / run.name if parked_dir else None
        if parked is not None and parked.is_dir() and not _holds_run(suite_dir):
            suite_dir.mkdir(parents=True, exist_ok=True)
            if restore(parked, suite_dir) is not None:
                say(f"resuming {run.name} from {parked}")
        say(f"training {run.name} in {suite_dir}")
        outcome = run_suite(
            [run.entry],
            suite_dir,
            name=run.name,
            retries=retries,
            profile_config=profile_config,
            console=console,
            quiet=quiet,
        )
        state = outcome.entries[run.entry.key]
        if outcome.interrupted:
            if parked is not None and state.run_dir and _parkable(run):
                say(f"parked {park(Path(state.run_dir), parked)}")
            return outcome.exit_code
        if state.status != "complete":
            say(f"{run.name} failed: {state.error}")
            return 1
        target = copy_in(Path(state.run_dir), results_dir)
        say(f"copied {run.name} into {target}")
        if parked is not None and parked.is_dir():
            shutil.rmtree(parked)  # the run is complete: its parked checkpoint goes
    return 0


def park_unfinished(runs: Sequence[PlannedRun], work_dir: Path, parked_dir: Path) -> list[Path]:
    """Park every unfinished plateau run of ``runs`` in ``work_dir`` (the day's end)."""
    parked = []
    for run in runs:
        if not _parkable(run):
            continue
        for config_path in sorted((Path(work_dir) / run.name).glob(f"*/{rundir.CONFIG}")):
            info = rundir.read_run(config_path.parent)
            if info.status != "complete" and (info.path / rundir.LAST).is_file():
                parked.append(park(info.path, Path(parked_dir) / run.name))
    return parked


def _parkable(run: PlannedRun) -> bool:
    """Runs of a schedule that may outlast a day; a budget run is sized to finish in one."""
    return run.entry.train_config(Path(".")).schedule != "linear"


def _holds_run(suite_dir: Path) -> bool:
    return any(suite_dir.glob(f"*/{rundir.CONFIG}"))


def write_plan_report(
    runs: Sequence[PlannedRun],
    results_dir: Path,
    out: Path,
    *,
    title: str,
    study: str | None = None,
    baseline: str = "squeezenet",
) -> Path:
    """The report of the committed runs, with a pending row for each planned run not there."""
    committed = committed_runs(results_dir) if Path(results_dir).is_dir() else {}
    records = collect_runs(sorted(committed.values())) if committed else []
    pending = [r for r in runs if r.identity not in committed]
    done = len(runs) - len(pending)
    closing = f"the plan has {done} of {len(runs)} runs committed; " + (
        f"{len(pending)} remain (table at the end)" if pending else "none remains"
    )
    path, _ = write_report(
        records,
        out,
        baseline=baseline,
        study=study,
        title=title,
        notes=[f"runs: {results_dir}", closing],
        sections=_pending_section(pending),
    )
    return path


def _pending_section(pending: Sequence[PlannedRun]) -> list[str]:
    if not pending:
        return []
    frame = pd.DataFrame(
        {
            "architecture": [r.identity.arch for r in pending],
            "seed": [str(r.identity.seed) for r in pending],
            "dataset": [r.identity.dataset for r in pending],
            "protocol": [r.identity.protocol for r in pending],
            "status": ["pending"] * len(pending),
            "plan entry": [r.name for r in pending],
        }
    )
    return ["## Pending (planned, not committed yet)", "", frame.to_markdown(index=False), ""]
