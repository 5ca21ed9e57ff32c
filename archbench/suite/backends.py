"""Where a suite's jobs run: one after another in this process, or as Ray tasks."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .. import files
from ..errors import ArchbenchError
from ..profile import ProfileConfig
from ..train import rundir
from .cluster import check_request_fits, task_device
from .job import run_entry
from .progress import LiveProgress, record_result
from .state import EntryState, SuiteState

BACKENDS = ("local", "ray")


def _pending(state: SuiteState, retries: int) -> list[EntryState]:
    return [
        e
        for e in state.entries.values()
        if e.status != "complete" and not (e.status == "failed" and e.attempts > retries)
    ]


@dataclass(frozen=True)
class RayResources:
    """Where and with what each Ray task runs: the cluster address, GPUs and CPUs per run."""

    address: str | None = None
    gpus: float = 0.0
    cpus: float = 1.0


def run_local(
    state: SuiteState, retries: int, config: ProfileConfig, progress, reprofile: bool = False
) -> bool:
    try:
        return _run_local_entries(state, retries, config, progress, reprofile)
    except KeyboardInterrupt:  # between runs: everything finished so far is already saved
        return True


def _run_local_entries(
    state: SuiteState, retries: int, config: ProfileConfig, progress, reprofile: bool
) -> bool:
    for entry in state.entries.values():
        while entry.status != "complete" and entry.attempts <= retries:
            entry.attempts += 1
            state.save()
            key = entry.key
            result = run_entry(
                asdict(entry),
                str(state.suite_dir),
                config,
                lambda s, k=key: progress.set(k, s),
                reprofile=reprofile,
            )
            record_result(state, progress, result)
            if entry.status == "interrupted":
                entry.attempts -= 1  # an interruption is not a failed attempt
                state.save()
                return True
    return False


def run_ray(
    state: SuiteState,
    retries: int,
    config: ProfileConfig,
    progress: LiveProgress,
    resources: RayResources,
    reprofile: bool = False,
) -> bool:
    """Each pending run as a Ray task; its device follows from the GPUs it reserves."""
    devices = {
        key: task_device(resources.gpus, entry.overrides.get("device"))
        for key, entry in state.entries.items()
    }
    try:
        import ray
    except ImportError:
        raise ArchbenchError(
            '--backend ray needs Ray: pip install "archbench[ray]" (or pip install ray)'
        ) from None
    if not ray.is_initialized():
        try:
            ray.init(address=resources.address, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as error:
            where = resources.address or "a new local instance"
            raise ArchbenchError(f"could not start or reach Ray at {where}: {error}") from None
    check_request_fits(ray.nodes(), resources.gpus, resources.cpus)
    remote = ray.remote(num_cpus=resources.cpus, num_gpus=resources.gpus, max_retries=0)(run_entry)
    in_flight: dict[Any, str] = {}

    def submit(entry: EntryState) -> None:
        entry.attempts += 1
        progress.set(entry.key, "submitted to Ray")
        job = remote.remote(
            asdict(entry),
            str(state.suite_dir),
            config,
            device=devices[entry.key],
            reprofile=reprofile,
        )
        in_flight[job] = entry.key

    for entry in _pending(state, retries):
        submit(entry)
    state.save()
    try:
        while in_flight:
            done, _ = ray.wait(list(in_flight), num_returns=1, timeout=2.0)
            for ref in done:
                key = in_flight.pop(ref)
                try:
                    result = ray.get(ref)
                except Exception as error:  # the worker died: count it as a failed attempt
                    result = asdict(state.entries[key]) | {
                        "status": "failed",
                        "error": f"Ray task failed: {type(error).__name__}: {error}",
                    }
                entry = record_result(state, progress, result)
                if entry.status != "complete" and entry.attempts <= retries:
                    submit(entry)
                    state.save()
            for key in in_flight.values():
                progress.set(key, _ray_line(state, state.entries[key]))
    except KeyboardInterrupt:
        for ref in in_flight:
            ray.cancel(ref)
        for key in in_flight.values():
            entry = state.entries[key]
            entry.status, entry.attempts = "interrupted", max(entry.attempts - 1, 0)
        state.save()
        return True
    return False


def _ray_line(state: SuiteState, entry: EntryState) -> str:
    """A running Ray job's progress, read from its run directory's metrics."""
    newest = None
    for config_path in state.suite_dir.glob(f"*/{rundir.CONFIG}"):
        train = files.read_json(config_path).get("train", {})
        if train.get("arch") == entry.arch and train.get("dataset") == entry.dataset:
            newest = max(newest or config_path.parent, config_path.parent)
    if newest is None:
        return "starting on Ray"
    metrics = newest / rundir.METRICS
    epochs = len(metrics.read_text().splitlines()) - 1 if metrics.is_file() else 0
    result = files.read_json(newest / rundir.RESULT) if (newest / rundir.RESULT).is_file() else {}
    if result.get("status") == "complete":
        return "profiling"
    return f"training epoch {epochs + 1}"
