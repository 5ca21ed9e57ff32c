"""One suite job: bring a planned run to complete and profiled, in this process or on Ray.

Every job on a node trains under :func:`archbench.measure.exclusive.computing` and profiles under
:func:`archbench.measure.exclusive.measuring`, so on Ray, with several jobs per node, a profile
never overlaps another job's training or profile; ``profile.json`` records when it held the node.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from rich.console import Console

from ..errors import ArchbenchError
from ..profile import ProfileConfig, profile_run
from ..train import rundir, train_run
from .plan import SuiteEntry


def run_entry(
    entry: dict,
    suite_dir: str,
    profile_config: ProfileConfig,
    on_status: Callable[[str], None] | None = None,
    *,
    device: str | None = None,
    reprofile: bool = False,
) -> dict:
    """Bring one planned run to complete-and-profiled; runs in this process or a Ray worker.

    ``device`` overrides the plan's for a new run (a Ray task trains where its reservation
    is); ``reprofile`` profiles a complete run even if it has a profile. Returns the entry's
    new state fields. Never raises for a failing run: its reason is data.
    """
    say = on_status or (lambda status: None)
    suite = Path(suite_dir)
    state = dict(entry)
    try:
        run_dir = _unfinished_run(suite, state)
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
            )
            run_dir, outcome_status = outcome.run_dir, outcome.status
        state["run_dir"] = str(run_dir)
        if outcome_status != "complete":
            state.update(status=outcome_status, error=None)
            return state
        if reprofile or not (Path(run_dir) / rundir.PROFILE).is_file():
            say("profiling")
            profile_run(Path(run_dir), profile_config, console=Console(quiet=True), quiet=True)
        state.update(status="complete", error=None)
    except KeyboardInterrupt:
        state.update(status="interrupted")
    except Exception as error:  # the run fails, the suite goes on
        state.update(status="failed", error=f"{type(error).__name__}: {error}")
    return state


def _unfinished_run(suite: Path, state: dict) -> Path | None:
    """The run directory to continue: the recorded one, or one a killed job left unrecorded."""
    if state.get("run_dir") and state.get("status") != "failed":
        path = Path(state["run_dir"])
        if (path / rundir.CONFIG).is_file() and (path / rundir.LAST).is_file():
            return path
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
            train["arch"] == state["arch"]
            and train["dataset"] == state["dataset"]
            and train.get("seed") == seed
            and info.status in ("running", "interrupted")
            and (info.path / rundir.LAST).is_file()
        ):
            return info.path
    return None
