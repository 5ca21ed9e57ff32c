"""One suite job: bring a planned run to complete and profiled, in this process or on Ray.

Every job on a node trains under :func:`archbench.measure.exclusive.computing` and profiles under
:func:`archbench.measure.exclusive.measuring`, so on Ray, with several jobs per node, a profile
never overlaps another job's training or profile; ``profile.json`` records when it held the node.

Each run's ``config.json`` names its suite entry and attempt (``suite_entry``,
``suite_attempt``) and, on Ray, the node it trains on (``ray_node``): the head reads them to
show where a run is and to find the run a lost node left behind, which the retry resumes from
its last checkpoint.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from rich.console import Console

from .. import files
from ..errors import ArchbenchError
from ..profile import ProfileConfig, profile_run
from ..train import rundir, train_run
from ..train.records import append_log
from .plan import SuiteEntry

SUITE_ENTRY = "suite_entry"  # config.json: the key of the suite entry a run belongs to
SUITE_ATTEMPT = "suite_attempt"  # config.json: which of the entry's attempts (last) trained it
RAY_NODE = "ray_node"  # config.json: {"id", "hostname"} of the Ray node it (last) trained on
RESUMABLE = ("running", "interrupted")  # result.json of a run stopped or killed, not failed


def run_entry(
    entry: dict,
    suite_dir: str,
    profile_config: ProfileConfig,
    on_status: Callable[[str], None] | None = None,
    *,
    device: str | None = None,
    reprofile: bool = False,
    ray_node: dict | None = None,
) -> dict:
    """Bring one planned run to complete-and-profiled; runs in this process or a Ray worker.

    ``device`` overrides the plan's for a new run (a Ray task trains where its reservation
    is); ``reprofile`` profiles a complete run even if it has a profile; ``ray_node`` is the
    node a Ray task runs on, recorded in ``config.json``. Returns the entry's new state fields
    and ``attempt``, this attempt's record. Never raises for a failing run: its reason is data,
    and its traceback is kept in the run's ``train.log`` (or in the attempt record when the run
    failed before it had a directory), never printed.
    """
    say = on_status or (lambda status: None)
    suite = Path(suite_dir)
    state = dict(entry)
    attempt: dict = {"attempt": state.get("attempts", 0)}
    if ray_node is not None:
        attempt["node"] = ray_node
    annotations = {SUITE_ENTRY: state["key"], SUITE_ATTEMPT: attempt["attempt"]}
    annotations |= {RAY_NODE: ray_node} if ray_node else {}
    run_dir: Path | None = None
    newest_before = entry_run_dir(suite, state["key"])
    try:
        run_dir = unfinished_run(suite, state)
        if run_dir is not None and rundir.read_run(run_dir).status == "complete":
            outcome_status = "complete"
        else:
            train = SuiteEntry(state["arch"], state["dataset"], state["overrides"])
            config = train.train_config(suite)
            if device is not None:
                config = replace(config, device=device)

            def epoch_done(row: dict) -> None:
                say(f"training epoch {row['epoch']}")

            say("training")
            outcome = train_run(
                config,
                console=Console(quiet=True),
                quiet=True,
                resume=run_dir,
                on_epoch_end=epoch_done,
                group=train.group,
                annotations=annotations,
            )
            run_dir, outcome_status = outcome.run_dir, outcome.status
        state["run_dir"] = str(run_dir)
        if outcome_status != "complete":
            state.update(status=outcome_status, error=None)
            return state | {"attempt": attempt | {"status": outcome_status}}
        if reprofile or not (Path(run_dir) / rundir.PROFILE).is_file():
            say("profiling")
            profile_run(Path(run_dir), profile_config, console=Console(quiet=True), quiet=True)
        state.update(status="complete", error=None)
    except KeyboardInterrupt:
        state.update(status="interrupted")
    except Exception as error:  # the run fails, the suite goes on
        reason = f"{type(error).__name__}: {error}"
        state.update(status="failed", error=reason)
        if run_dir is None:  # a new run: its directory, if training got as far as making it
            newest = entry_run_dir(suite, state["key"])
            run_dir = newest if newest != newest_before else None
        if run_dir is not None:
            state["run_dir"] = str(run_dir)
        attempt |= _keep_traceback(run_dir, reason, traceback.format_exc().rstrip())
    return state | {"attempt": attempt | {"status": state["status"], "reason": state["error"]}}


def _keep_traceback(run_dir: Path | None, reason: str, trace: str) -> dict:
    """Keep a failure's traceback in its run's ``train.log``; without a run, in the attempt.

    The trainer logs a failure inside training itself (``result.json`` then carries the same
    reason); a failure around it (profiling, resuming) is logged here.
    """
    if run_dir is None or not (run_dir / rundir.LOG).is_file():
        return {"traceback": trace}
    try:
        result = files.read_json(run_dir / rundir.RESULT)
    except (OSError, ValueError):  # none, or damaged: log the traceback here
        result = {}
    if not (result.get("status") == "failed" and result.get("error") == reason):
        append_log(run_dir / rundir.LOG, f"suite job failed: {reason}\n{trace}")
    return {}


def entry_run_dir(suite: Path, key: str) -> Path | None:
    """The newest run directory a suite entry's jobs created (``config.json``'s ``suite_entry``)."""
    return entry_run_dirs(suite).get(key)


def entry_run_dirs(suite: Path) -> dict[str, Path]:
    """Each suite entry's newest run directory, from one pass over the suite's ``config.json``s."""
    newest: dict[str, Path] = {}
    for config_path in sorted(suite.glob(f"*/{rundir.CONFIG}")):
        try:
            key = files.read_json(config_path).get(SUITE_ENTRY)
        except (OSError, ValueError):  # being replaced, or damaged: the next look will tell
            continue
        if isinstance(key, str):
            newest[key] = config_path.parent  # sorted by name: timestamps, so the last is newest
    return newest


def unfinished_run(suite: Path, state: dict) -> Path | None:
    """The run directory to continue: the recorded one, or one a killed job left unrecorded.

    A run is continued while its own ``result.json`` says it is complete (it is then only
    profiled) or was stopped or killed mid-run (a lost Ray node, Ctrl-C), whatever the entry's
    status; a run that failed by raising starts afresh.
    """
    recorded = Path(state["run_dir"]) if state.get("run_dir") else None
    if recorded is not None and _continuable(recorded):
        return recorded
    candidate = entry_run_dir(suite, state["key"])
    if candidate is not None:
        return candidate if _continuable(candidate) else None
    return _legacy_unfinished_run(suite, state)


def _continuable(path: Path) -> bool:
    """Complete (then only profiled), or stopped mid-run with a checkpoint to resume from."""
    if not (path / rundir.CONFIG).is_file() or not (path / rundir.LAST).is_file():
        return False
    try:
        return rundir.read_run(path).status in (*RESUMABLE, "complete")
    except ArchbenchError:
        return False


def _legacy_unfinished_run(suite: Path, state: dict) -> Path | None:
    """A run from before runs named their suite entry: matched on arch, dataset and seed."""
    if state.get("status") == "failed":
        return None
    for config_path in sorted(suite.glob(f"*/{rundir.CONFIG}"), reverse=True):
        try:
            info = rundir.read_run(config_path.parent)
        except ArchbenchError:
            continue
        train = info.config["train"]
        seed = state["overrides"].get("seed", train.get("seed"))
        if (
            SUITE_ENTRY not in info.config
            and train["arch"] == state["arch"]
            and train["dataset"] == state["dataset"]
            and train.get("seed") == seed
            and info.status in RESUMABLE
            and (info.path / rundir.LAST).is_file()
        ):
            return info.path
    return None
