"""Batch-1 latency of every registered network on cpu-eager and cpu-onnxruntime.

These are pytest-benchmark tests. In the normal suite they run in quick mode (a few rounds) so
CI proves they work without being slow or flaky; ``tox -e bench`` runs them with more rounds and
checks them against the committed baseline (see ``benchmarks/latency_regression.py``). The
``calibration`` benchmark is a fixed matrix-multiply workload: dividing every latency by it
cancels a uniformly faster or slower machine.

Environment (set by the driver): ``ARCHBENCH_BENCH_ROUNDS`` (default 3), ``..._THREADS``
(default 1: the least noisy), and, to prove the check bites, ``..._SLOWDOWN=ARCH:FRACTION``
(that network's timed call busy-waits an extra FRACTION of its own duration) and
``..._UNIFORM_SLOWDOWN=FRACTION`` (every timed call, calibration included, does the same:
a uniformly slower machine).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import pytest
import torch

from archbench.complexity import count_macs, count_parameters
from archbench.data import DataConfig, load_data, normalize
from archbench.export import INPUT_NAME, export_onnx, ort_cpu_session
from archbench.latency import torch_threads
from architectures import arch_info, create_arch, list_archs
from tests.native_inputs import to_input_size

ROUNDS = int(os.environ.get("ARCHBENCH_BENCH_ROUNDS", "3"))
WARMUP = int(os.environ.get("ARCHBENCH_BENCH_WARMUP", "2"))
THREADS = int(os.environ.get("ARCHBENCH_BENCH_THREADS", "1"))
BACKENDS = ("cpu-eager", "cpu-onnxruntime")
CALIBRATION_N = 384  # a 384^3 matmul: ~1 ms on one modern core, the scale of a small network


def _slowdown(arch: str | None) -> float:
    fraction = float(os.environ.get("ARCHBENCH_BENCH_UNIFORM_SLOWDOWN", "0") or 0)
    target = os.environ.get("ARCHBENCH_BENCH_SLOWDOWN", "")
    if target and arch is not None:
        name, _, extra = target.rpartition(":")
        if name == arch:
            fraction += float(extra)
    return fraction


def _slowed(fn: Callable[[], object], fraction: float) -> Callable[[], object]:
    """``fn`` followed by a busy wait of ``fraction`` of its own duration (0: ``fn`` itself)."""
    if fraction <= 0:
        return fn

    def slowed():
        start = time.perf_counter()
        out = fn()
        deadline = time.perf_counter() + fraction * (time.perf_counter() - start)
        while time.perf_counter() < deadline:
            pass
        return out

    return slowed


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    """One real digits test image, normalized as in training: (1, 3, 32, 32)."""
    data = load_data(DataConfig(dataset="digits"))
    return normalize(data.test.images[:1], data.mean, data.std).contiguous()


def _run(benchmark, fn: Callable[[], object]) -> None:
    with torch_threads(THREADS):
        benchmark.pedantic(fn, rounds=ROUNDS, warmup_rounds=WARMUP, iterations=1)


def test_calibration(benchmark):
    benchmark.group = "calibration"
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(CALIBRATION_N, CALIBRATION_N, generator=generator)
    b = torch.randn(CALIBRATION_N, CALIBRATION_N, generator=generator)
    benchmark.extra_info.update(workload=f"{CALIBRATION_N}^3 fp32 matmul", threads=THREADS)
    _run(benchmark, _slowed(lambda: torch.mm(a, b), _slowdown(None)))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("arch", list_archs())
def test_latency(benchmark, arch, backend, image, tmp_path):
    model = create_arch(arch, num_classes=10).eval()
    image = to_input_size(image, arch_info(arch).input_size)
    benchmark.group = arch
    benchmark.extra_info.update(
        arch=arch,
        backend=backend,
        threads=THREADS,
        params=count_parameters(model).trainable,
        macs=count_macs(model, tuple(image.shape)),
    )
    if backend == "cpu-eager":

        def forward():
            with torch.inference_mode():
                return model(image)

    else:
        exported = export_onnx(model, tmp_path / f"{arch}.onnx", input_shape=tuple(image.shape))
        assert exported.ok, exported.error
        session = ort_cpu_session(tmp_path / f"{arch}.onnx", threads=THREADS)
        feed = {INPUT_NAME: image.numpy()}

        def forward():
            return session.run(None, feed)

    out = forward()  # a real forward pass before timing: the output must be the logits
    logits = out if isinstance(out, torch.Tensor) else torch.from_numpy(out[0])
    assert logits.shape == (1, 10) and torch.isfinite(logits).all()
    _run(benchmark, _slowed(forward, _slowdown(arch)))
