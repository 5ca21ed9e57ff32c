"""Running a suite: every planned run brought to complete (or failed after its retries), then
a summary and a report over the suite's rundir.

Running the same command again skips complete runs, resumes interrupted ones from ``last.pt``,
profiles trained-but-unprofiled ones, and retries failed ones up to ``retries`` times.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from ..errors import ArchbenchError
from ..locks import DirectoryLock
from ..profile import ProfileConfig
from ..report import collect_runs, write_report
from ..train import EXIT_INTERRUPTED, rundir
from .backends import BACKENDS, RayResources, run_local, run_ray
from .plan import SuiteEntry
from .progress import LiveProgress, describe_entry
from .state import EntryState, SuiteState


@dataclass
class SuiteOutcome:
    suite_dir: Path
    entries: dict[str, EntryState]
    interrupted: bool
    report: Path | None

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return EXIT_INTERRUPTED
        return 0 if all(e.status == "complete" for e in self.entries.values()) else 1


def run_suite(
    entries: Sequence[SuiteEntry],
    suite_dir: Path,
    *,
    name: str,
    backend: str = "local",
    retries: int = 1,
    profile_config: ProfileConfig = ProfileConfig(),  # noqa: B008 (frozen)
    console: Console | None = None,
    quiet: bool = False,
    ray_address: str | None = None,
    gpus_per_run: float = 0.0,
    cpus_per_run: float = 1.0,
    reprofile: bool = False,
) -> SuiteOutcome:
    """Bring every entry to complete (or failed after ``retries`` retries), then report.

    The suite directory is held by this process throughout (a second suite on it is refused
    with one line naming this one). ``reprofile`` profiles every complete run again (after a
    change of profiling options, or to replace a damaged ``profile.json``).
    """
    console = console or Console()
    if backend not in BACKENDS:
        raise ArchbenchError(f"--backend {backend!r} is not one of {', '.join(BACKENDS)}")
    if retries < 0:
        raise ArchbenchError(f"--retries must be >= 0, got {retries}")
    suite_dir = rundir.ensure_writable(Path(suite_dir))
    with DirectoryLock(suite_dir, "archbench suite"):
        state = SuiteState(suite_dir, name, entries)
        if not reprofile:
            _check_profiles(state)  # before any work: a damaged profile would fail the report
        for entry in state.entries.values():
            # A new command gives failed runs a new set of attempts; --reprofile reopens the rest.
            if entry.status == "failed" or (reprofile and entry.status == "complete"):
                entry.status, entry.attempts = "queued", 0
        state.save()
        with LiveProgress(state, console, quiet) as progress:
            if backend == "local":
                interrupted = run_local(state, retries, profile_config, progress, reprofile)
            else:
                resources = RayResources(ray_address, gpus_per_run, cpus_per_run)
                interrupted = run_ray(
                    state, retries, profile_config, progress, resources, reprofile
                )
        report = None if interrupted else _report(state)
    outcome = SuiteOutcome(suite_dir, state.entries, interrupted, report)
    if not quiet:
        _print_summary(outcome, console)
    return outcome


def _check_profiles(state: SuiteState) -> None:
    """One line naming a complete run's unreadable ``profile.json`` and the remedy."""
    for entry in state.entries.values():
        if entry.status != "complete" or not entry.run_dir:
            continue
        path = Path(entry.run_dir) / rundir.PROFILE
        if path.is_file():
            rundir.read_json_file(path, rundir.profile_remedy(Path(entry.run_dir)))


def _report(state: SuiteState) -> Path | None:
    run_dirs = [Path(e.run_dir) for e in state.entries.values() if e.run_dir]
    if not run_dirs:
        return None
    out = state.suite_dir / "report.md"
    write_report(
        collect_runs(run_dirs),
        out,
        study="souza2020" if state.name == "souza2020" else None,
        title=f"suite {state.name}",
        notes=[
            f"suite directory: {state.suite_dir}",
            f"generated {time.strftime('%Y-%m-%d %H:%M')}",
        ],
    )
    return out


def _print_summary(outcome: SuiteOutcome, console: Console) -> None:
    table = Table(title="suite summary")
    for column in ("run", "status", "attempts", "run directory / reason"):
        table.add_column(column, overflow="fold")
    for entry in outcome.entries.values():
        detail = entry.error if entry.status == "failed" else (entry.run_dir or "")
        failures = [a["reason"] for a in entry.attempt_log if a.get("status") == "failed"]
        if entry.status == "complete" and failures:  # a lost node, say: why it took more tries
            detail = f"{detail} (retried after: {failures[-1]})"
        table.add_row(entry.key, describe_entry(entry), str(entry.attempts), detail or "")
    console.print(table)
    if outcome.interrupted:
        console.print("interrupted: rerun the same command to continue where it stopped")
    elif outcome.report:
        console.print(f"report: {outcome.report}")
