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

import contextlib
import copy
import difflib
import math
import statistics
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .errors import ArchbenchError

BACKENDS = ("cpu-eager", "cpu-onnxruntime", "cuda-eager", "cuda-naive", "cuda-onnxruntime")
_GROUPS = {
    "all": BACKENDS,
    "cpu": tuple(b for b in BACKENDS if b.startswith("cpu-")),
    "cuda": tuple(b for b in BACKENDS if b.startswith("cuda-")),
}

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
        }


def parse_backends(spec: str | Iterable[str]) -> tuple[str, ...]:
    """``"cpu-eager,cpu-onnxruntime"``, ``"all"``, ``"cpu"`` or ``"cuda"`` -> backend names.

    Order is kept, duplicates dropped; an unknown name is an :class:`ArchbenchError` naming the
    closest known one.
    """
    names = spec.split(",") if isinstance(spec, str) else list(spec)
    chosen: list[str] = []
    for raw in names:
        name = raw.strip().lower()
        if not name:
            continue
        if name in _GROUPS:
            expanded = _GROUPS[name]
        elif name in BACKENDS:
            expanded = (name,)
        else:
            known = (*BACKENDS, *_GROUPS)
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ArchbenchError(
                f"unknown backend {raw.strip()!r}; {hint}choose from {', '.join(known)}"
            )
        chosen.extend(b for b in expanded if b not in chosen)
    if not chosen:
        raise ArchbenchError(f"no backend given; choose from {', '.join((*BACKENDS, *_GROUPS))}")
    return tuple(chosen)


def device_of(backend: str) -> str:
    """``"cpu"`` or ``"cuda"``: the device a backend runs on."""
    return backend.split("-", 1)[0]


class _Skip(Exception):
    """Raised while setting a backend up: it cannot run here, for the given reason."""


def describe_error(error: BaseException) -> str:
    """``Type: first line of the message`` (exporter errors append whole IR graphs)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = lines[0] if lines else ""
    if len(text) > 300:
        text = text[:297] + "..."
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run with ``torch.set_num_threads(threads)``, restoring the previous count afterwards."""
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextlib.contextmanager
def _eval_copy(model: nn.Module, device: str) -> Iterator[nn.Module]:
    """``model`` in eval mode on ``device``: the model itself if already there (its training
    flag restored afterwards), else a copy, so the caller's model never moves."""
    parameter = next(model.parameters(), None)
    here = parameter is None or parameter.device.type == device
    target = model if here else copy.deepcopy(model).to(device)
    was_training = model.training
    target.eval()
    try:
        yield target
    finally:
        model.train(was_training)


def _cuda_skip_reason() -> str | None:
    if not torch.cuda.is_available():
        built = torch.version.cuda
        return (
            f"CUDA is not available (CUDA {built} build of torch, no usable GPU or driver)"
            if built
            else "CUDA is not available (CPU-only build of torch)"
        )
    return None


# --------------------------------------------------------------------------------------------
# Runners: one per backend. ``prepare`` does everything that must stay outside the timed region;
# ``time_one`` times one forward pass of a prepared input and returns nanoseconds; ``time_loop``
# times ``iters`` back-to-back passes (for throughput) and returns nanoseconds.
# --------------------------------------------------------------------------------------------


class _Runner:
    method = ""
    device = "cpu"
    report_threads = True
    measures_throughput = True

    def prepare(self, batch: torch.Tensor) -> Any:
        raise NotImplementedError

    def time_one(self, prepared: Any) -> int:
        raise NotImplementedError

    def time_loop(self, prepared: Any, iters: int) -> int:
        start = time.perf_counter_ns()
        for _ in range(iters):
            self.call(prepared)
        return time.perf_counter_ns() - start

    def call(self, prepared: Any) -> Any:
        raise NotImplementedError


class _TorchCPU(_Runner):
    method = (
        "torch eager on CPU under torch.inference_mode; time.perf_counter_ns around each "
        "batch-1 forward pass"
    )

    def __init__(self, model: nn.Module):
        self.model = model

    def prepare(self, batch: torch.Tensor) -> torch.Tensor:
        return batch.contiguous()

    def call(self, prepared: torch.Tensor) -> Any:
        return self.model(prepared)

    def time_one(self, prepared: torch.Tensor) -> int:
        model = self.model
        start = time.perf_counter_ns()
        model(prepared)
        return time.perf_counter_ns() - start


class _TorchCUDAEvents(_Runner):
    method = (
        "torch eager on CUDA under torch.inference_mode; one torch.cuda.Event(enable_timing) "
        "pair around each batch-1 forward pass, synchronized after each sample"
    )
    device = "cuda"
    report_threads = False

    def __init__(self, model: nn.Module):
        self.model = model
        self.start = torch.cuda.Event(enable_timing=True)
        self.end = torch.cuda.Event(enable_timing=True)

    def prepare(self, batch: torch.Tensor) -> torch.Tensor:
        prepared = batch.contiguous().to("cuda", non_blocking=False)
        torch.cuda.synchronize()  # the copy is finished before any timing starts
        return prepared

    def call(self, prepared: torch.Tensor) -> Any:
        return self.model(prepared)

    def time_one(self, prepared: torch.Tensor) -> int:
        self.start.record()
        self.model(prepared)
        self.end.record()
        self.end.synchronize()
        return round(self.start.elapsed_time(self.end) * 1e6)  # ms -> ns

    def time_loop(self, prepared: torch.Tensor, iters: int) -> int:
        torch.cuda.synchronize()
        self.start.record()
        for _ in range(iters):
            self.model(prepared)
        self.end.record()
        self.end.synchronize()
        return round(self.start.elapsed_time(self.end) * 1e6)


class _TorchCUDANaive(_TorchCUDAEvents):
    method = (
        "the study's method: wall clock (time.perf_counter_ns) around each batch-1 forward pass "
        "on CUDA with NO synchronization; measures kernel launch, not execution; no throughput"
    )
    measures_throughput = False  # unsynchronized loops only measure how fast launches queue

    def time_one(self, prepared: torch.Tensor) -> int:
        start = time.perf_counter_ns()
        self.model(prepared)
        return time.perf_counter_ns() - start


def _ort_session(onnx_path: Path, provider: str, threads: int | None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.inter_op_num_threads = 1
    if threads is not None:
        options.intra_op_num_threads = int(threads)
    if provider == "CUDAExecutionProvider":
        providers: list = [("CUDAExecutionProvider", {"device_id": 0}), "CPUExecutionProvider"]
    else:
        providers = [provider]
    return ort.InferenceSession(str(onnx_path), sess_options=options, providers=providers)


class _OrtCPU(_Runner):
    method = (
        "ONNX Runtime CPUExecutionProvider, ORT_ENABLE_ALL, inter_op_num_threads=1; "
        "time.perf_counter_ns around each batch-1 session.run on a prepared numpy array"
    )

    def __init__(self, onnx_path: Path, threads: int):
        self.session = _ort_session(onnx_path, "CPUExecutionProvider", threads)
        self.input_name = self.session.get_inputs()[0].name

    def prepare(self, batch: torch.Tensor) -> dict[str, np.ndarray]:
        return {self.input_name: np.ascontiguousarray(batch.detach().cpu().numpy())}

    def call(self, prepared: dict[str, np.ndarray]) -> Any:
        return self.session.run(None, prepared)

    def time_one(self, prepared: dict[str, np.ndarray]) -> int:
        run = self.session.run
        start = time.perf_counter_ns()
        run(None, prepared)
        return time.perf_counter_ns() - start


class _OrtCUDA(_Runner):
    method = (
        "ONNX Runtime CUDAExecutionProvider with IOBinding (input copied to the GPU before the "
        "timed region, output left on the GPU); time.perf_counter_ns around run_with_iobinding "
        "plus synchronize_outputs"
    )
    device = "cuda"
    report_threads = False

    def __init__(self, onnx_path: Path, threads: int):
        import onnxruntime as ort

        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise _Skip(
                "onnxruntime has no CUDAExecutionProvider "
                f"(available: {', '.join(ort.get_available_providers())}; "
                "install onnxruntime-gpu)"
            )
        self.ort = ort
        try:
            self.session = _ort_session(onnx_path, "CUDAExecutionProvider", threads)
        except Exception as error:  # e.g. CUDA or cuDNN libraries missing for this build
            raise _Skip(f"onnxruntime could not start CUDA: {describe_error(error)}") from None
        used = self.session.get_providers()
        if not used or used[0] != "CUDAExecutionProvider":
            raise _Skip(
                f"onnxruntime session fell back to {', '.join(used) or 'nothing'} "
                "instead of CUDAExecutionProvider"
            )
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [output.name for output in self.session.get_outputs()]

    def prepare(self, batch: torch.Tensor):
        array = np.ascontiguousarray(batch.detach().cpu().numpy())
        value = self.ort.OrtValue.ortvalue_from_numpy(array, "cuda", 0)
        binding = self.session.io_binding()
        binding.bind_ortvalue_input(self.input_name, value)
        for name in self.output_names:
            binding.bind_output(name, "cuda", 0)
        binding.synchronize_inputs()
        return binding, value  # keep the OrtValue alive as long as the binding

    def call(self, prepared) -> Any:
        binding, _ = prepared
        self.session.run_with_iobinding(binding)
        binding.synchronize_outputs()

    def time_one(self, prepared) -> int:
        binding, _ = prepared
        run = self.session.run_with_iobinding
        start = time.perf_counter_ns()
        run(binding)
        binding.synchronize_outputs()
        return time.perf_counter_ns() - start


_RUNNERS: dict[str, type[_Runner]] = {
    "cpu-eager": _TorchCPU,
    "cpu-onnxruntime": _OrtCPU,
    "cuda-eager": _TorchCUDAEvents,
    "cuda-naive": _TorchCUDANaive,
    "cuda-onnxruntime": _OrtCUDA,
}


def backend_method(backend: str) -> str:
    """How ``backend`` times a forward pass, in words (recorded with every result)."""
    return _RUNNERS[backend].method


def _make_runner(
    backend: str, model: nn.Module | None, onnx_path: Path | None, threads: int
) -> Callable[[], contextlib.AbstractContextManager[_Runner]]:
    """A context-manager factory building the backend's runner, or raise :class:`_Skip`."""
    if backend.startswith("cuda-") and (reason := _cuda_skip_reason()):
        raise _Skip(reason)
    if backend.endswith("-onnxruntime"):
        if onnx_path is None:
            raise _Skip("no ONNX file given")
        if not Path(onnx_path).is_file():
            raise _Skip(f"ONNX file not found: {onnx_path}")
        try:
            import onnxruntime  # noqa: F401
        except ImportError as error:
            raise _Skip(f"onnxruntime is not installed ({error})") from None
        runner_class = _RUNNERS[backend]

        @contextlib.contextmanager
        def ort_runner() -> Iterator[_Runner]:
            yield runner_class(Path(onnx_path), threads)

        return ort_runner
    if model is None:
        raise _Skip("no PyTorch model given")
    runner_class = _RUNNERS[backend]

    @contextlib.contextmanager
    def torch_runner() -> Iterator[_Runner]:
        with _eval_copy(model, device_of(backend)) as target, torch.inference_mode():
            yield runner_class(target)

    return torch_runner


def _throughput(runner: _Runner, samples: torch.Tensor, batch_size: int) -> float:
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
        make_runner = _make_runner(backend, model, onnx_path, threads)
    except _Skip as skip:
        return result("skipped", str(skip))

    try:
        with torch_threads(threads), make_runner() as runner:
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
    except _Skip as skip:
        return result("skipped", str(skip))
    except Exception as error:  # a run-time failure is a result, not a crash
        return result("error", describe_error(error))
