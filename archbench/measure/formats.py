"""Peaks per numeric format: each backend's floor is judged against its own format's peak.

An int8 or bf16 backend judged against the fp32 FLOP peak and fp32 byte counts has a "floor"
it can beat (int8 ran at a quarter of the fp32 layer-wise bound). So:

* :func:`peak_format` says which format a backend's arithmetic runs in: ``fp32``, ``int8``
  (ONNX Runtime QDQ models), ``bf16`` (eager bf16), ``fp16`` (CUDA half backends) or ``tf32``
  (CUDA eager with TF32 on);
* :data:`ELEMENT_BYTES` is the bytes of one weight or activation in that format (int8 weights
  and QDQ activations are 1 byte);
* :func:`cached_format_peak` probes the format's FLOP/s once per machine, device, threads and
  library versions, and caches it beside the fp32 peak: int8 from ONNX Runtime's quantized 1x1
  convolution and matrix product (the kernels a QDQ model runs) on the same thread count; bf16
  from oneDNN's bf16 matmul and 1x1 convolution, only where the CPU has native bf16; fp16 from a
  CUDA half matmul. Bandwidths (DRAM and cache levels) are the fp32 probe's: a byte is a byte.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import files
from .layerwise import LayerCost
from .numerics import bf16_skip_reason, numerics_of
from .roofline import (
    CONV_SHAPE,
    DEFAULT_MATMUL_N,
    DEFAULT_REPEATS,
    SHORT_CONV_SHAPE,
    SHORT_MATMUL_N,
    SHORT_REPEATS,
    MachinePeak,
    _best_seconds_cpu,
    _best_seconds_cuda,
    _probe_session,
    cached_peak,
    peak_cache_path,
)

ELEMENT_BYTES = {"fp32": 4, "tf32": 4, "bf16": 2, "fp16": 2, "int8": 1}
INT8_MATMUL_N = 1024


def peak_format(backend: str, *, tf32: bool = False) -> str:
    """The numeric format of ``backend``'s arithmetic (``tf32``: the profile's TF32 switch)."""
    reduced = numerics_of(backend)
    if reduced != "fp32":
        return reduced
    return "tf32" if tf32 and backend == "cuda-eager" else "fp32"


def costs_in_format(costs: list[LayerCost], fmt: str) -> list[LayerCost]:
    """The same layers with weights and activations in ``fmt``'s bytes (from fp32 counts).

    The FLOPs do not change; counting them again (fvcore tracing) would cost seconds.
    """
    size = ELEMENT_BYTES[fmt]
    return [
        dataclasses.replace(
            cost,
            weight_bytes=cost.weight_bytes * size // 4,
            input_bytes=cost.input_bytes * size // 4,
            output_bytes=cost.output_bytes * size // 4,
        )
        for cost in costs
    ]


def format_skip_reason(fmt: str, device: str) -> str | None:
    """Why ``fmt`` has no peak on ``device`` here, or ``None`` when it can be probed."""
    if fmt in ("fp32", "tf32"):
        return None
    if fmt == "int8":
        return None if device == "cpu" else "int8 runs on the CPU (ONNX Runtime) only"
    if fmt == "bf16":
        return bf16_skip_reason() if device == "cpu" else "bf16 is probed on the CPU only"
    if fmt == "fp16":
        if device != "cuda" or not torch.cuda.is_available():
            return "fp16 is probed on CUDA only"
        return None
    return f"unknown numeric format {fmt!r}"


def _int8_conv_seconds(shape, threads: int, repeats: int) -> float:
    """ONNX Runtime's QLinearConv, uint8 activations and per-channel int8 weights (as QDQ)."""
    from onnx import TensorProto, helper, numpy_helper

    batch, channels, height, width = shape
    rng = np.random.default_rng(0)
    weight = rng.integers(-127, 128, (channels, channels, 1, 1), dtype=np.int8)
    constants = {
        "x_scale": np.array(0.02, np.float32),
        "x_zero": np.array(128, np.uint8),
        "w": weight,
        "w_scale": np.full(channels, 0.01, np.float32),
        "w_zero": np.zeros(channels, np.int8),
        "y_scale": np.array(0.05, np.float32),
        "y_zero": np.array(128, np.uint8),
    }
    node = helper.make_node(
        "QLinearConv",
        ["x", "x_scale", "x_zero", "w", "w_scale", "w_zero", "y_scale", "y_zero"],
        ["y"],
    )
    graph = helper.make_graph(
        [node],
        "peak_int8_conv1x1",
        [helper.make_tensor_value_info("x", TensorProto.UINT8, list(shape))],
        [helper.make_tensor_value_info("y", TensorProto.UINT8, list(shape))],
        [numpy_helper.from_array(value, name) for name, value in constants.items()],
    )
    session = _probe_session(graph, threads)
    feed = {"x": rng.integers(0, 256, shape, dtype=np.uint8)}
    return _best_seconds_cpu(lambda: session.run(None, feed), repeats)


def _int8_matmul_seconds(n: int, threads: int, repeats: int) -> float:
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["a", "b", "a_zero"], ["y"])],
        "peak_int8_matmul",
        [helper.make_tensor_value_info("a", TensorProto.UINT8, [n, n])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [n, n])],
        [
            numpy_helper.from_array(rng.integers(-127, 128, (n, n), dtype=np.int8), "b"),
            numpy_helper.from_array(np.array(128, np.uint8), "a_zero"),
        ],
    )
    session = _probe_session(graph, threads)
    feed = {"a": rng.integers(0, 256, (n, n), dtype=np.uint8)}
    return _best_seconds_cpu(lambda: session.run(None, feed), repeats)


def _conv1x1_ops(shape) -> int:
    batch, channels, height, width = shape
    return 2 * batch * channels * channels * height * width


def _int8_probes(threads: int, repeats: int) -> dict[str, float]:
    """QLinearConv 1x1 (long, and short repeated: robust to a busy machine), MatMulInteger."""
    short_s = _int8_conv_seconds(SHORT_CONV_SHAPE, threads, max(repeats, SHORT_REPEATS))
    conv_s = _int8_conv_seconds(CONV_SHAPE, threads, repeats)
    n = INT8_MATMUL_N
    return {
        "onnxruntime_int8_conv1x1_short": _conv1x1_ops(SHORT_CONV_SHAPE) / short_s / 1e9,
        "onnxruntime_int8_conv1x1": _conv1x1_ops(CONV_SHAPE) / conv_s / 1e9,
        "onnxruntime_int8_matmul": 2 * n**3 / _int8_matmul_seconds(n, threads, repeats) / 1e9,
    }


def _bf16_probes(repeats: int) -> dict[str, float]:
    n = DEFAULT_MATMUL_N["cpu"]
    generator = torch.Generator().manual_seed(0)
    a, b = (torch.randn(n, n, generator=generator).bfloat16() for _ in range(2))
    batch, channels, height, width = CONV_SHAPE
    x = torch.randn(CONV_SHAPE, generator=generator).bfloat16()
    weight = torch.randn(channels, channels, 1, 1, generator=generator).bfloat16()
    conv_flops = 2 * batch * channels * channels * height * width
    with torch.inference_mode():
        matmul_s = _best_seconds_cpu(lambda: torch.mm(a, b), repeats)
        conv_s = _best_seconds_cpu(lambda: torch.nn.functional.conv2d(x, weight), repeats)
    short_n = SHORT_MATMUL_N
    a_short, b_short = a[:short_n, :short_n].contiguous(), b[:short_n, :short_n].contiguous()
    with torch.inference_mode():  # short and repeated: robust to a busy machine
        short_s = _best_seconds_cpu(lambda: torch.mm(a_short, b_short), max(repeats, SHORT_REPEATS))
    return {
        "torch_bf16_matmul_short": 2 * short_n**3 / short_s / 1e9,
        "torch_bf16_matmul": 2 * n**3 / matmul_s / 1e9,
        "torch_bf16_conv1x1": conv_flops / conv_s / 1e9,
    }


def _fp16_probes(repeats: int) -> dict[str, float]:
    n = DEFAULT_MATMUL_N["cuda"]
    a, b = (torch.randn(n, n, device="cuda", dtype=torch.float16) for _ in range(2))
    seconds = _best_seconds_cuda(lambda: torch.mm(a, b), repeats)
    return {"torch_fp16_matmul": 2 * n**3 / seconds / 1e9}


def measure_format_gflops(
    fmt: str, device: str, threads: int, *, repeats: int = DEFAULT_REPEATS
) -> dict[str, float]:
    """GFLOP/s (int8: GOP/s, a multiply-add counted as 2) of each probe of ``fmt``."""
    reason = format_skip_reason(fmt, device)
    if reason is not None:
        raise RuntimeError(reason)
    previous = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        if fmt == "int8":
            return _int8_probes(threads, repeats)
        if fmt == "bf16":
            return _bf16_probes(repeats)
        return _fp16_probes(repeats)
    finally:
        torch.set_num_threads(previous)


def _format_cache_path(cache_dir: Path | None, device: str, threads: int, fmt: str) -> Path:
    base = peak_cache_path(cache_dir, device, threads)
    return base.with_name(f"{base.stem}-{fmt}.json")


def cached_format_peak(
    cache_dir: Path | None, device: str, threads: int, fmt: str, *, refresh: bool = False
) -> MachinePeak:
    """``fmt``'s peak on ``device``: its own FLOP/s (probed once, cached), fp32's bandwidths.

    ``fp32`` is :func:`archbench.measure.roofline.cached_peak` itself; ``tf32`` is that under
    the caller's TF32 policy (the cache key records the policy), relabelled.
    """
    base = cached_peak(cache_dir, device, threads, refresh=refresh and fmt in ("fp32", "tf32"))
    if fmt in ("fp32", "tf32"):
        return dataclasses.replace(base, numeric_format=fmt)
    path = _format_cache_path(cache_dir, device, threads, fmt)
    record: dict[str, Any] | None = None
    if not refresh and path.is_file():
        try:
            record = json.loads(path.read_text())
            probes = {str(k): float(v) for k, v in record["probes"].items()}
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            record = None  # corrupt or from another version: measure again
    if record is None:
        probes = measure_format_gflops(fmt, device, threads)
        record = {
            "numeric_format": fmt,
            "probes": probes,
            "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        files.write_json(path, record)
    return dataclasses.replace(
        base,
        gflops=max(probes.values()),
        probes=probes,
        numeric_format=fmt,
        measured_at=record["measured_at"],
    )
