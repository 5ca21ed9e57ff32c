"""Per-sample inference latency on several backends, measured the way the study did, but honestly.

The study timed one batch-1 forward pass per test image and reported mean and standard
deviation. :func:`measure_latency` does the same for each backend:

* every sample is one batch-1 forward pass timed on its own (``time.perf_counter_ns``, or a CUDA
  event pair on the GPU);
* ``warmup`` passes run first and are excluded;
* inputs are sliced, made contiguous, moved to the device (or turned into numpy arrays for ONNX
  Runtime) *before* the timed region; nothing but the forward call is inside it;
* a backend that cannot run here is a ``skipped`` result with its reason, one that fails while
  running an ``error`` result with its reason: never a zero, never an exception.

``cuda-naive`` reproduces the study's GPU method (wall clock around the call, no
synchronization): it measures how long the kernel launches take to queue, not the execution, and
its ``method`` string says so. ``cuda-eager`` is the honest GPU figure.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import describe_error
from .backends import BACKENDS, Runner, SkipBackend, backend_method, make_runner, parse_backends
from .models import torch_threads

# Throughput: each batch size gets THROUGHPUT_WARMUP untimed passes (the last one also
# calibrates the loop length), then THROUGHPUT_REPEATS timed loops of at least
# THROUGHPUT_MIN_LOOP_S each; the reported figure is the median loop's images/s.
THROUGHPUT_WARMUP = 2
THROUGHPUT_REPEATS = 5
THROUGHPUT_MIN_LOOP_S = 0.1
THROUGHPUT_MAX_ITERS = 100


@dataclass(frozen=True)
class LatencyStats:
    """Summary of per-sample latencies in milliseconds."""

    n: int
    mean_ms: float
    std_ms: float  # sample standard deviation (ddof=1); 0.0 for a single sample
    min_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float

    @classmethod
    def from_samples_ns(cls, samples_ns: Iterable[int | float]) -> LatencyStats:
        """Statistics of nanosecond samples; percentiles interpolate linearly (numpy default)."""
        ms = np.asarray(list(samples_ns), dtype=np.float64) / 1e6
        if ms.ndim != 1 or ms.size == 0:
            raise ValueError("LatencyStats needs at least one sample")
        p50, p90, p99 = np.percentile(ms, [50, 90, 99])
        return cls(
            n=int(ms.size),
            mean_ms=float(ms.mean()),
            std_ms=float(ms.std(ddof=1)) if ms.size > 1 else 0.0,
            min_ms=float(ms.min()),
            p50_ms=float(p50),
            p90_ms=float(p90),
            p99_ms=float(p99),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class BackendResult:
    """What one backend measured, or why it could not."""

    backend: str
    status: str  # "ok" | "skipped" | "error"
    reason: str | None
    method: str
    batch1: LatencyStats | None = None
    throughput: dict[int, float] = field(default_factory=dict)  # batch size -> images/s
    threads: int | None = None
    cold_start: dict[str, Any] | None = None  # fresh-interpreter stages (profile.deployment)
    memory: dict[str, Any] | None = None  # peak inference memory, from the same interpreter

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "status": self.status,
            "reason": self.reason,
            "method": self.method,
            "threads": self.threads,
            "batch1": self.batch1.to_dict() if self.batch1 is not None else None,
            # JSON object keys are strings; write them so a reloaded file compares equal.
            "throughput": {str(batch): ips for batch, ips in sorted(self.throughput.items())},
            "cold_start": self.cold_start,
            "memory": self.memory,
        }


def _throughput(runner: Runner, samples: torch.Tensor, batch_size: int) -> float:
    """Images/s of back-to-back forward passes on one real batch (median of several loops)."""
    index = torch.arange(batch_size) % samples.shape[0]  # repeat samples if there are fewer
    prepared = runner.prepare(samples[index])
    for _ in range(THROUGHPUT_WARMUP - 1):
        runner.call(prepared)
    one_pass_ns = max(runner.time_loop(prepared, 1), 1)  # last warm-up pass; calibrates
    iters = min(THROUGHPUT_MAX_ITERS, max(1, math.ceil(THROUGHPUT_MIN_LOOP_S * 1e9 / one_pass_ns)))
    rates = []
    for _ in range(THROUGHPUT_REPEATS):
        elapsed_ns = max(runner.time_loop(prepared, iters), 1)
        rates.append(batch_size * iters * 1e9 / elapsed_ns)
    return float(statistics.median(rates))


def measure_latency(
    backend: str,
    *,
    model: nn.Module | None,
    onnx_path: Path | None,
    samples: torch.Tensor,
    warmup: int = 10,
    threads: int | None,
    batch_sizes: Iterable[int] = (1, 64),
) -> BackendResult:
    """Time ``backend`` on every image of ``samples`` (one batch-1 pass each), then throughput.

    Args:
        backend: one of :data:`BACKENDS`.
        model: the PyTorch model (for the eager backends); it is put in eval mode for the
            measurement and its training flag restored; a model on another device is copied,
            never moved.
        onnx_path: the exported model (for the ONNX Runtime backends).
        samples: ``(N, C, H, W)`` float32 CPU images; ``N`` timed samples.
        warmup: untimed batch-1 passes before the timed ones (cycling through ``samples``).
        threads: intra-op threads for the CPU backends (``None``: torch's current count).
        batch_sizes: throughput is measured for each size > 1; size 1 reports
            ``1000 / mean_ms``, the rate of the timed per-sample passes.

    Returns:
        a :class:`BackendResult`: ``ok``, or ``skipped`` / ``error`` with a reason.
    """
    if backend not in BACKENDS:
        parse_backends(backend)  # raises with a close match
    if not isinstance(samples, torch.Tensor) or samples.ndim != 4 or samples.shape[0] == 0:
        raise ValueError(f"samples must be a non-empty (N, C, H, W) tensor, got {samples!r:.80}")
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    samples = samples.detach().to("cpu", torch.float32)
    threads = int(threads) if threads is not None else torch.get_num_threads()
    sizes = sorted({int(b) for b in batch_sizes})
    if any(b < 1 for b in sizes):
        raise ValueError(f"batch sizes must be >= 1, got {sizes}")

    def result(status: str, reason: str | None, **kwargs) -> BackendResult:
        return BackendResult(backend, status, reason, backend_method(backend), **kwargs)

    try:
        open_runner = make_runner(backend, model, onnx_path, threads)
    except SkipBackend as skip:
        return result("skipped", str(skip))

    try:
        with torch_threads(threads), open_runner() as runner:
            n = samples.shape[0]
            # Inputs are prepared (sliced, contiguous, on device / numpy) before any timing.
            warm_inputs = [runner.prepare(samples[i % n : i % n + 1]) for i in range(warmup)]
            inputs = [runner.prepare(samples[i : i + 1]) for i in range(n)]
            for prepared in warm_inputs:
                runner.call(prepared)
            del warm_inputs
            if runner.device == "cuda":
                torch.cuda.synchronize()
            timings = [runner.time_one(prepared) for prepared in inputs]
            if runner.device == "cuda":
                torch.cuda.synchronize()  # cuda-naive leaves work queued; drain it, untimed
            del inputs
            stats = LatencyStats.from_samples_ns(timings)
            throughput: dict[int, float] = {}
            if runner.measures_throughput:
                for size in sizes:
                    if size == 1:
                        if stats.mean_ms > 0:
                            throughput[1] = 1000.0 / stats.mean_ms
                    else:
                        throughput[size] = _throughput(runner, samples, size)
            return result(
                "ok",
                None,
                batch1=stats,
                throughput=throughput,
                threads=threads if runner.report_threads else None,
            )
    except SkipBackend as skip:
        return result("skipped", str(skip))
    except Exception as error:  # a run-time failure is a result, not a crash
        return result("error", describe_error(error))
