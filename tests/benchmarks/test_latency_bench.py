"""Batch-1 latency of every registered network on cpu-eager and cpu-onnxruntime.

These are pytest-benchmark tests over the cases of ``benchmarks/latency_cases.py`` (the same
cases the A/B worker times). In the normal suite they run in quick mode (a few rounds) so CI
proves they work without being slow or flaky; ``benchmarks/latency_regression.py save|compare``
runs them with more rounds against a stored per-machine baseline.

Environment (set by the driver): ``ARCHBENCH_BENCH_ROUNDS`` (default 3), ``..._WARMUP``
(default 2), ``..._THREADS`` (default 1: the least noisy).
"""

from __future__ import annotations

import os

import pytest
import torch

from benchmarks.latency_cases import all_cases, build_forward, case_name, make_input

ROUNDS = int(os.environ.get("ARCHBENCH_BENCH_ROUNDS", "3"))
WARMUP = int(os.environ.get("ARCHBENCH_BENCH_WARMUP", "2"))
THREADS = int(os.environ.get("ARCHBENCH_BENCH_THREADS", "1"))


@pytest.fixture
def threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    yield THREADS
    torch.set_num_threads(previous)


@pytest.mark.parametrize(("arch", "backend"), all_cases(), ids=lambda c: c)
@pytest.mark.slow
def test_latency(benchmark, arch, backend, threads, tmp_path):
    benchmark.group = arch
    benchmark.extra_info.update(arch=arch, backend=backend, threads=threads)
    forward = build_forward(arch, backend, make_input(), threads, tmp_path)  # checks the logits
    benchmark.pedantic(forward, rounds=ROUNDS, warmup_rounds=WARMUP, iterations=1)


def test_case_names_are_unique():
    names = [case_name(*case) for case in all_cases()]
    assert len(names) == len(set(names)) and len(names) == 2 * len({a for a, _ in all_cases()})
