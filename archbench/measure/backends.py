"""The five ways archbench times a forward pass, and how each is set up or skipped.

A runner's ``prepare`` does everything that must stay outside the timed region; ``time_one``
times one forward pass of a prepared input and returns nanoseconds; ``time_loop`` times ``iters``
back-to-back passes (for throughput). A backend that cannot run here raises
:class:`SkipBackend` with its reason while being set up.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ArchbenchError, describe_error
from .models import eval_copy
from .numerics import bf16_skip_reason
from .onnxrt import create_session

BACKENDS = (
    "cpu-eager",
    "cpu-onnxruntime",
    "cpu-onnxruntime-int8",
    "cpu-eager-bf16",
    "cuda-eager",
    "cuda-naive",
    "cuda-onnxruntime",
    "cuda-eager-fp16",
    "cuda-onnxruntime-fp16",
)
# Eager backends that run a copy of the model in another dtype.
EAGER_DTYPES = {"cpu-eager-bf16": torch.bfloat16, "cuda-eager-fp16": torch.float16}
_GROUPS = {
    "all": BACKENDS,
    "cpu": tuple(b for b in BACKENDS if b.startswith("cpu-")),
    "cuda": tuple(b for b in BACKENDS if b.startswith("cuda-")),
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


def is_onnxruntime(backend: str) -> bool:
    """Whether ``backend`` runs an ONNX file (fp32, int8 or fp16) in ONNX Runtime."""
    return "-onnxruntime" in backend


def device_of(backend: str) -> str:
    """``"cpu"`` or ``"cuda"``: the device a backend runs on."""
    return backend.split("-", 1)[0]


class SkipBackend(Exception):
    """Raised while setting a backend up: it cannot run here, for the given reason."""


def _cuda_skip_reason() -> str | None:
    if not torch.cuda.is_available():
        built = torch.version.cuda
        return (
            f"CUDA is not available (CUDA {built} build of torch, no usable GPU or driver)"
            if built
            else "CUDA is not available (CPU-only build of torch)"
        )
    return None


class Runner:
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


class _TorchCPU(Runner):
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


class _TorchCPUBf16(_TorchCPU):
    method = (
        "torch eager on CPU, a bfloat16 copy of the model (weights and activations), under "
        "torch.inference_mode; time.perf_counter_ns around each batch-1 forward pass"
    )

    def prepare(self, batch: torch.Tensor) -> torch.Tensor:
        return batch.to(torch.bfloat16).contiguous()


class _TorchCUDAEvents(Runner):
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


class _TorchCUDAFp16(_TorchCUDAEvents):
    method = (
        "torch eager on CUDA, a float16 copy of the model, under torch.inference_mode; one "
        "torch.cuda.Event pair around each batch-1 forward pass, synchronized after each sample"
    )

    def prepare(self, batch: torch.Tensor) -> torch.Tensor:
        return super().prepare(batch.half())


class _OrtCPU(Runner):
    method = (
        "ONNX Runtime CPUExecutionProvider, ORT_ENABLE_ALL, inter_op_num_threads=1; "
        "time.perf_counter_ns around each batch-1 session.run on a prepared numpy array"
    )

    def __init__(self, onnx_path: Path, threads: int):
        opened = create_session(onnx_path, device="cpu", threads=threads)
        if opened.fallback:
            raise SkipBackend(opened.fallback)
        self.session, self.input_name = opened.session, opened.input_name

    def prepare(self, batch: torch.Tensor) -> dict[str, np.ndarray]:
        return {self.input_name: np.ascontiguousarray(batch.detach().cpu().numpy())}

    def call(self, prepared: dict[str, np.ndarray]) -> Any:
        return self.session.run(None, prepared)

    def time_one(self, prepared: dict[str, np.ndarray]) -> int:
        run = self.session.run
        start = time.perf_counter_ns()
        run(None, prepared)
        return time.perf_counter_ns() - start


class _OrtCPUInt8(_OrtCPU):
    method = (
        "ONNX Runtime CPUExecutionProvider on the static int8 QDQ model (per-channel weights, "
        "calibrated on training images), ORT_ENABLE_ALL; time.perf_counter_ns around each "
        "batch-1 session.run"
    )


class _OrtCUDA(Runner):
    method = (
        "ONNX Runtime CUDAExecutionProvider with IOBinding (input copied to the GPU before the "
        "timed region, output left on the GPU); time.perf_counter_ns around run_with_iobinding "
        "plus synchronize_outputs"
    )
    device = "cuda"
    report_threads = False

    def __init__(self, onnx_path: Path, threads: int):
        import onnxruntime as ort

        self.ort = ort
        try:
            opened = create_session(onnx_path, device="cuda", threads=threads)
        except Exception as error:  # e.g. CUDA or cuDNN libraries missing for this build
            reason = f"onnxruntime could not start CUDA: {describe_error(error)}"
            raise SkipBackend(reason) from None
        if opened.fallback:
            raise SkipBackend(opened.fallback)
        self.session, self.input_name = opened.session, opened.input_name
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


class _OrtCUDAFp16(_OrtCUDA):
    method = (
        "ONNX Runtime CUDAExecutionProvider on a float16 export of the model, with IOBinding; "
        "time.perf_counter_ns around run_with_iobinding plus synchronize_outputs"
    )

    def prepare(self, batch: torch.Tensor):
        return super().prepare(batch.half())


_RUNNERS: dict[str, type[Runner]] = {
    "cpu-eager": _TorchCPU,
    "cpu-onnxruntime": _OrtCPU,
    "cuda-eager": _TorchCUDAEvents,
    "cuda-naive": _TorchCUDANaive,
    "cuda-onnxruntime": _OrtCUDA,
    "cpu-onnxruntime-int8": _OrtCPUInt8,
    "cpu-eager-bf16": _TorchCPUBf16,
    "cuda-eager-fp16": _TorchCUDAFp16,
    "cuda-onnxruntime-fp16": _OrtCUDAFp16,
}


def backend_method(backend: str) -> str:
    """How ``backend`` times a forward pass, in words (recorded with every result)."""
    return _RUNNERS[backend].method


def make_runner(
    backend: str, model: nn.Module | None, onnx_path: Path | None, threads: int
) -> Callable[[], contextlib.AbstractContextManager[Runner]]:
    """A context-manager factory building the backend's runner, or raise :class:`SkipBackend`."""
    if backend.startswith("cuda-") and (reason := _cuda_skip_reason()):
        raise SkipBackend(reason)
    if backend == "cpu-eager-bf16" and (reason := bf16_skip_reason()):
        raise SkipBackend(reason)
    if is_onnxruntime(backend):
        if onnx_path is None:
            raise SkipBackend("no ONNX file given")
        if not Path(onnx_path).is_file():
            raise SkipBackend(f"ONNX file not found: {onnx_path}")
        try:
            import onnxruntime  # noqa: F401
        except ImportError as error:
            raise SkipBackend(f"onnxruntime is not installed ({error})") from None
        runner_class = _RUNNERS[backend]

        @contextlib.contextmanager
        def ort_runner() -> Iterator[Runner]:
            yield runner_class(Path(onnx_path), threads)

        return ort_runner
    if model is None:
        raise SkipBackend("no PyTorch model given")
    runner_class = _RUNNERS[backend]

    @contextlib.contextmanager
    def torch_runner() -> Iterator[Runner]:
        with eval_copy(model, device_of(backend)) as target, torch.inference_mode():
            dtype = EAGER_DTYPES.get(backend)
            yield runner_class(target if dtype is None else copy.deepcopy(target).to(dtype))

    return torch_runner
