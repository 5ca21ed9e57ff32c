"""The one place archbench opens an ONNX Runtime session.

Every caller (the latency backends, the export parity check, the roofline probes) gets the same
settings: a graph optimization level, sequential execution with one inter-op thread, and
``threads`` intra-op threads. ONNX Runtime quietly runs a model on the CPU when the provider it
was asked for cannot start; a benchmark must not, so :func:`create_session` compares
``session.get_providers()`` with what was asked and puts the reason in
:attr:`OrtSession.fallback`. Callers report such a figure as skipped with that reason.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# Providers asked for, in order of preference, per device.
PROVIDERS = {
    "cpu": ("CPUExecutionProvider",),
    "cuda": ("CUDAExecutionProvider", "CPUExecutionProvider"),
}
OPTIMIZATIONS = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}
_PROVIDER_OPTIONS = {"CUDAExecutionProvider": {"device_id": 0}}
_INSTALL_HINT = {"CUDAExecutionProvider": "; install onnxruntime-gpu"}


_preloaded = False


def _preload_cuda_libraries(ort) -> None:
    """Load the CUDA and cuDNN libraries of the pip ``nvidia-*`` packages (``archbench[gpu]``
    installs them) before a CUDA session looks for them: without it the provider fails to load
    ``libcurand`` & co. and the session silently runs on the CPU. Once per process; 1.21+."""
    global _preloaded
    if not _preloaded and hasattr(ort, "preload_dlls"):
        # Best effort: a library still missing shows as the session's fallback, with its reason.
        with contextlib.suppress(Exception):
            ort.preload_dlls()
    _preloaded = True


@dataclass(frozen=True)
class OrtSession:
    """A session and the providers it really runs on.

    ``fallback`` is ``None`` when the session runs on the provider asked for; otherwise it says
    why not, and ``session`` is ``None`` when no session was built (the provider is not in this
    onnxruntime build).
    """

    session: Any  # onnxruntime.InferenceSession | None
    requested: tuple[str, ...]
    providers: tuple[str, ...]
    fallback: str | None = None

    @property
    def input_name(self) -> str:
        return self.session.get_inputs()[0].name


def create_session(
    model: str | Path | bytes,
    *,
    device: str = "cpu",
    threads: int | None = None,
    optimization: str = "all",
    profile_prefix: str | None = None,
    initializers: Mapping[str, np.ndarray] | None = None,
) -> OrtSession:
    """Open ``model`` (an ONNX file or its serialized bytes) on ``device`` ("cpu" or "cuda").

    ``threads`` sets the intra-op thread count (``None``: onnxruntime's default); the inter-op
    count is 1 and execution sequential, so a latency is one stream of work. ``optimization``
    is one of :data:`OPTIMIZATIONS` (default ``"all"``, ``ORT_ENABLE_ALL``). ``profile_prefix``
    turns on ONNX Runtime's own per-node profiler, writing ``<prefix>_<date>.json`` when the
    caller calls ``session.end_profiling()`` (the layer-wise roofline reads it). Errors while
    loading the model propagate; a missing or unused provider is reported in the result.
    ``initializers`` supplies the data of the model's external-data initializers by name, from
    memory: a 256 MB probe weight then skips protobuf serialization (0.6 s instead of 2.4 s).
    """
    import onnxruntime as ort

    if device not in PROVIDERS:
        raise ValueError(f"device must be one of {', '.join(PROVIDERS)}, got {device!r}")
    if optimization not in OPTIMIZATIONS:
        raise ValueError(
            f"optimization must be one of {', '.join(OPTIMIZATIONS)}, got {optimization!r}"
        )
    requested = PROVIDERS[device]
    wanted = requested[0]
    if device == "cuda":
        _preload_cuda_libraries(ort)
    available = ort.get_available_providers()
    if wanted not in available:
        reason = (
            f"onnxruntime has no {wanted} "
            f"(available: {', '.join(available)}{_INSTALL_HINT.get(wanted, '')})"
        )
        return OrtSession(session=None, requested=requested, providers=(), fallback=reason)

    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(
        ort.GraphOptimizationLevel, OPTIMIZATIONS[optimization]
    )
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.inter_op_num_threads = 1
    if threads is not None:
        options.intra_op_num_threads = int(threads)
    if initializers:
        names = list(initializers)
        values = [ort.OrtValue.ortvalue_from_numpy(initializers[name]) for name in names]
        options.add_external_initializers(names, values)
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    providers = [
        (name, _PROVIDER_OPTIONS[name]) if name in _PROVIDER_OPTIONS else name for name in requested
    ]
    source = model if isinstance(model, bytes) else str(model)
    session = ort.InferenceSession(source, sess_options=options, providers=providers)
    used = tuple(session.get_providers())
    fallback = None
    if not used or used[0] != wanted:
        used_text = ", ".join(used) or "nothing"
        fallback = f"onnxruntime session fell back to {used_text} instead of {wanted}"
    return OrtSession(session=session, requested=requested, providers=used, fallback=fallback)


def in_memory_initializer(name: str, value: np.ndarray):
    """A graph initializer of ``value``'s type and shape whose bytes are not in the protobuf:
    pass ``{name: value}`` as :func:`create_session`'s ``initializers`` (no 2 GB limit, and no
    seconds spent serializing a large weight)."""
    from onnx import TensorProto, helper

    tensor = TensorProto(
        name=name,
        data_type=helper.np_dtype_to_tensor_dtype(value.dtype),
        dims=list(value.shape),
    )
    tensor.data_location = TensorProto.EXTERNAL
    tensor.external_data.add(key="location", value="in-memory")
    return tensor
