"""Ray device choice and resource checks, decided on the head (no GPU or cluster needed)."""

from __future__ import annotations

import pytest

from archbench.errors import ArchbenchError
from archbench.suite.cluster import check_request_fits, task_device

# ray.nodes() records of a head without GPUs and a worker with two.
NODES = [
    {"NodeID": "head", "Alive": True, "Resources": {"CPU": 8.0, "memory": 3e10}},
    {"NodeID": "gpu-worker", "Alive": True, "Resources": {"CPU": 16.0, "GPU": 2.0}},
    {"NodeID": "gone", "Alive": False, "Resources": {"CPU": 64.0, "GPU": 8.0}},
]


@pytest.mark.parametrize(
    ("gpus", "requested", "device"),
    [(1, None, "cuda"), (0.5, "auto", "cuda"), (2, "cuda", "cuda"), (0, None, "cpu"),
     (0, "cpu", "cpu")],
)  # fmt: skip
def test_a_task_trains_where_its_reservation_is(gpus, requested, device):
    assert task_device(gpus, requested) == device


@pytest.mark.parametrize(
    ("gpus", "requested", "message"),
    [(0, "cuda", "needs --gpus-per-run 1"), (1, "cpu", "contradicts --gpus-per-run 1")],
)
def test_contradictions_are_one_line(gpus, requested, message):
    with pytest.raises(ArchbenchError, match=message) as refused:
        task_device(gpus, requested)
    assert "\n" not in str(refused.value)


def test_requests_some_node_meets_are_left_to_ray():
    check_request_fits(NODES, gpus_per_run=2, cpus_per_run=16)
    check_request_fits(NODES, gpus_per_run=0, cpus_per_run=1)


@pytest.mark.parametrize(
    ("gpus", "cpus", "message"),
    [
        (3, 1, "--gpus-per-run 3 asks for more GPUs than the Ray cluster has "
               r"\(at most 2 on one node of 2 alive\)"),
        (0, 17, "--cpus-per-run 17 asks for more CPUs"),
    ],
)  # fmt: skip
def test_impossible_requests_fail_up_front(gpus, cpus, message):
    with pytest.raises(ArchbenchError, match=message):
        check_request_fits(NODES, gpus_per_run=gpus, cpus_per_run=cpus)


def test_a_cluster_without_gpus_says_so():
    with pytest.raises(ArchbenchError, match=r"none on any node of 1 alive"):
        check_request_fits(NODES[:1], gpus_per_run=1, cpus_per_run=1)
