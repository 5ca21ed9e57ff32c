"""What a Ray task may ask of the cluster, decided on the head before anything is submitted.

Ray hides the GPUs a task did not reserve (``CUDA_VISIBLE_DEVICES``), so the device a run
trains on follows from ``--gpus-per-run``, not from the head node's hardware: a task with
GPUs trains on ``cuda`` (its reserved GPU is ``cuda:0`` inside it), one without on ``cpu``.
And Ray queues a task whose resources no node has forever; archbench refuses it up front.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..errors import ArchbenchError


def task_device(gpus_per_run: float, requested: str | None) -> str:
    """The device every run's task trains on, or a one-line refusal of a contradiction.

    ``requested`` is the plan's ``device`` setting (``None`` or ``"auto"``: not set).
    """
    requested = requested or "auto"
    if gpus_per_run > 0:
        if requested == "cpu":
            raise ArchbenchError(
                f"--set device=cpu contradicts --gpus-per-run {gpus_per_run:g}: drop one of them"
            )
        return "cuda"
    if requested == "cuda":
        raise ArchbenchError(
            "--set device=cuda on Ray needs --gpus-per-run 1 (or more): "
            "a task that reserved no GPU sees none"
        )
    return "cpu"


def check_request_fits(nodes: Iterable[dict], gpus_per_run: float, cpus_per_run: float) -> None:
    """Refuse a per-run request larger than any alive node (``ray.nodes()`` records).

    A request that fits some node is left to Ray, which queues it until that node is free.
    (An autoscaling cluster that would add a bigger node later is refused too: name a size the
    cluster has.)
    """
    alive = [node.get("Resources", {}) for node in nodes if node.get("Alive", True)]
    for name, amount, flag in (
        ("GPU", gpus_per_run, "--gpus-per-run"),
        ("CPU", cpus_per_run, "--cpus-per-run"),
    ):
        most = max((float(resources.get(name, 0)) for resources in alive), default=0.0)
        if amount > most:
            where = f"at most {most:g} on one node" if most else "none on any node"
            raise ArchbenchError(
                f"{flag} {amount:g} asks for more {name}s than the Ray cluster has "
                f"({where} of {len(alive)} alive); Ray would wait forever"
            )
