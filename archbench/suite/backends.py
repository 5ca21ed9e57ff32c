"""Where a suite's jobs run: one after another in this process, or as Ray tasks."""

from __future__ import annotations

import re
import socket
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .. import files
from ..errors import ArchbenchError
from ..profile import ProfileConfig
from ..train import rundir
from .cluster import check_request_fits, task_device
from .job import RAY_NODE, SUITE_ATTEMPT, entry_run_dir, entry_run_dirs, run_entry
from .progress import LiveProgress, describe_node, record_result
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
    """Each pending run as a Ray task; its device follows from the GPUs it reserves.

    Ray retries nothing itself (``max_retries=0``): a task lost with its worker or node comes
    back here as a failed attempt, recorded with the node and why, and its retry resumes the
    run from its last checkpoint (the run directory is on the shared ``--runs-dir``).
    """
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
    remote = ray.remote(num_cpus=resources.cpus, num_gpus=resources.gpus, max_retries=0)(ray_job)
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
                except Exception as error:  # the task died with its worker or its node
                    result = lost_job(state, key, error, ray.nodes())
                entry = record_result(state, progress, result)
                if entry.status != "complete" and entry.attempts <= retries:
                    submit(entry)
                    state.save()
            run_dirs = entry_run_dirs(state.suite_dir)
            for key in in_flight.values():
                progress.set(key, _ray_line(state.entries[key], run_dirs.get(key)))
    except KeyboardInterrupt:
        for ref in in_flight:
            ray.cancel(ref)
        for key in in_flight.values():
            entry = state.entries[key]
            entry.status, entry.attempts = "interrupted", max(entry.attempts - 1, 0)
        state.save()
        return True
    return False


def ray_job(entry: dict, suite_dir: str, config: ProfileConfig, **options) -> dict:
    """One Ray task: :func:`run_entry`, recording the node it runs on in the run's config."""
    import ray

    node = {"id": ray.get_runtime_context().get_node_id(), "hostname": socket.gethostname()}
    return run_entry(entry, suite_dir, config, ray_node=node, **options)


def lost_job(state: SuiteState, key: str, error: Exception, nodes: list[dict]) -> dict:
    """The result of a task that died without returning one: a failed attempt with the node
    and why in one line, Ray's full message kept in the attempt, and the run directory it
    left (resumed by the retry)."""
    entry = state.entries[key]
    run_dir = entry_run_dir(state.suite_dir, key)
    node = _dead_node(error, nodes) or _recorded_node(run_dir)
    kind = type(error).__name__
    if isinstance(error, _node_died_type()):
        which = f"Ray node {node['id'][:8]} ({node['hostname']})" if node else "its Ray node"
        reason = f"{which} was lost while running it ({kind})"
    else:
        first_line = (str(error).strip().splitlines() or [""])[0]
        where = f" {describe_node(node)}" if node else ""
        reason = f"Ray task failed{where}: {kind}: {first_line}"
    attempt = {"attempt": entry.attempts, "status": "failed", "reason": reason}
    attempt |= {"node": node} if node else {}
    return asdict(entry) | {
        "status": "failed",
        "error": reason,
        "run_dir": str(run_dir) if run_dir else entry.run_dir,
        "attempt": attempt | {"detail": str(error)},
    }


def _node_died_type() -> type:
    from ray.exceptions import NodeDiedError

    return NodeDiedError


def _dead_node(error: Exception, nodes: list[dict]) -> dict | None:
    """The node a Ray error names (``node ID: <hex>``), with its host from ``ray.nodes()``."""
    found = re.search(r"node ID: ([0-9a-f]{16,})", str(error))
    if found is None:
        return None
    node_id = found.group(1)
    host = next((n.get("NodeManagerHostname") for n in nodes if n.get("NodeID") == node_id), None)
    return {"id": node_id, "hostname": host or "?"}


def _recorded_node(run_dir: Path | None) -> dict | None:
    """The node a run's ``config.json`` says it last trained on."""
    if run_dir is None:
        return None
    try:
        return files.read_json(run_dir / rundir.CONFIG).get(RAY_NODE)
    except (OSError, ValueError):
        return None


def _ray_line(entry: EntryState, run_dir: Path | None) -> str:
    """A running Ray job's progress and node, read from its run directory on the shared disk."""
    retry = f"retry {entry.attempts - 1}: " if entry.attempts > 1 else ""
    if run_dir is None:
        return f"{retry}starting on Ray"
    try:
        config = files.read_json(run_dir / rundir.CONFIG)
        result = files.read_json(run_dir / rundir.RESULT)
    except (OSError, ValueError):  # not written yet, or being replaced
        return f"{retry}starting on Ray"
    if config.get(SUITE_ATTEMPT) != entry.attempts:  # an earlier attempt's run and node
        return f"{retry}starting on Ray"
    node = describe_node(config.get(RAY_NODE))
    if result.get("status") == "complete":
        return f"{retry}profiling {node}".rstrip()
    metrics = run_dir / rundir.METRICS
    epochs = len(metrics.read_text().splitlines()) - 1 if metrics.is_file() else 0
    return f"{retry}training epoch {epochs + 1} {node}".rstrip()
