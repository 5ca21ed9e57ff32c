"""An overhead model (a model, not a bound): what a network should take, not what it must.

No roofline term captures the fixed cost of running one operator: on ONNX Runtime a depthwise
node costs microseconds whatever its size, so a network of many small layers sits far above
its floor however good the engine is. Nor does the peak say what a small kernel reaches: the
peak is a large matrix product's, and a 1x1 convolution over 16x16 pixels gets a fraction of
it. :func:`probe_op_costs` measures, per backend and operator kind, one operator's time at a
few sizes, from a tiny one (the fixed cost) to a large one (near the kernel's best rate), each
as the slope of a chain of ``CHAIN`` such operators against one; the fixed cost of the call
itself is the one-node chain less its operator. A layer's cost is that curve read at the
layer's FLOPs (log-log interpolation; beyond the largest probe, at the largest probe's rate).
Then

    expected = call cost + sum over layers of max(layer floor, the layer's cost on the curve)

where compute-only entries (BatchNorm, fused activations) add their floor only. A measurement
may be below "expected" (it is no bound); p50 / expected says how much a network loses to
something the probes do not have (layouts, fusion, a shape the kernels handle worse).
"""

from __future__ import annotations

import itertools
import json
import math
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import files
from .layerwise import (
    LayerCost,
    layerwise_bound_dram_ms,
    layerwise_bound_ms,
)
from .roofline import MachinePeak, _probe_session, peak_cache_path

CHAIN = 16
# 16 channels: a multiple of ONNX Runtime's NCHWc block (8 or 16), so the tiny convolutions take
# the blocked kernels the real layers take; 2x2 keeps their own arithmetic well under a microsecond.
CHANNELS = 16
SIDE = 2
RUNS = 100
# "other": a tiny operator without weights (pooling, concatenation, quantize/dequantize, a
# layout reorder or, in eager PyTorch, an activation or BatchNorm module): the model charges
# each one the network runs at this cost.
OP_KINDS = ("conv", "pointwise", "depthwise", "matmul", "other")
# The sizes each kind is probed at, (channels, side), smallest first: the tiny one gives the
# fixed cost, the others how the rate grows with size, spanning the study's layers at 32x32
# (16-512 channels, 32x32 down to 2x2). A matrix product of channels * side**2 features.
CURVE_SIZES: dict[str, tuple[tuple[int, int], ...]] = {
    "conv": ((CHANNELS, SIDE), (32, 8), (64, 16), (256, 8)),
    "pointwise": ((CHANNELS, SIDE), (32, 8), (64, 16), (256, 8)),
    "depthwise": ((CHANNELS, SIDE), (32, 8), (64, 16), (256, 16)),
    "matmul": ((CHANNELS, SIDE), (16, 4), (64, 4)),
}
CPU_BACKENDS = ("cpu-eager", "cpu-eager-bf16", "cpu-onnxruntime", "cpu-onnxruntime-int8")


@dataclass(frozen=True)
class OpCosts:
    """Milliseconds of one operator call of each kind (its tiny probe: the fixed cost), the
    call around them, and each kind's curve: ``[flops, ms]`` of one operator per probed size."""

    backend: str
    conv_ms: float
    depthwise_ms: float
    matmul_ms: float
    call_ms: float
    other_ms: float = 0.0
    chain: int = CHAIN
    pointwise_ms: float = 0.0
    curves: dict[str, list[list[float]]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def per_op_ms(self, cost: LayerCost) -> float:
        """What the backend takes to run this layer as one operator of its kind, read off the
        kind's curve at the layer's FLOPs (the fixed cost without a curve; 0 for a fused entry)."""
        kind = op_kind(cost)
        if kind is None:
            return 0.0
        curve = self.curves.get(kind)
        if not curve:
            return getattr(self, f"{kind}_ms")
        return curve_ms(curve, cost.flops)


def curve_ms(curve: list[list[float]], flops: float) -> float:
    """One operator's milliseconds at ``flops``: log-log interpolation between the probed
    sizes; the smallest probe's time below it (the fixed cost), the largest probe's rate above."""
    points = sorted((max(f, 1.0), max(ms, 1e-9)) for f, ms in curve)
    flops = max(float(flops), 1.0)
    if flops <= points[0][0]:
        return points[0][1]
    for (f0, t0), (f1, t1) in itertools.pairwise(points):
        if flops <= f1:
            share = (math.log(flops) - math.log(f0)) / (math.log(f1) - math.log(f0))
            return math.exp(math.log(t0) + share * (math.log(t1) - math.log(t0)))
    last_flops, last_ms = points[-1]
    return last_ms * flops / last_flops


def op_kind(cost: LayerCost) -> str | None:
    """``conv``, ``pointwise`` (1x1), ``depthwise``, ``matmul``, or ``None`` for a
    compute-only (fused) entry."""
    if cost.weight_shape is None:
        return None
    if cost.kind == "Linear":
        return "matmul"
    if cost.groups > 1 and len(cost.weight_shape) >= 2 and cost.weight_shape[1] == 1:
        return "depthwise"
    if len(cost.weight_shape) == 4 and tuple(cost.weight_shape[2:]) == (1, 1):
        return "pointwise"
    return "conv"


def op_flops(kind: str, channels: int, side: int) -> int:
    """FLOPs (2 x MACs) of one probe operator of ``kind`` at ``(channels, side)``."""
    if kind == "matmul":
        return 2 * (channels * side * side) ** 2
    taps = {"conv": 9, "pointwise": 1, "depthwise": 9}[kind]
    per_pixel = channels * taps * (1 if kind == "depthwise" else channels)
    return 2 * per_pixel * side * side


def _median_ms(fn: Callable[[], Any], runs: int) -> float:
    for _ in range(max(runs // 10, 3)):
        fn()
    samples = []
    for _ in range(runs):
        start = time.perf_counter_ns()
        fn()
        samples.append(time.perf_counter_ns() - start)
    return statistics.median(samples) / 1e6


def _eager_chain(
    kind: str, length: int, dtype: torch.dtype, channels: int = CHANNELS, side: int = SIDE
) -> tuple[nn.Module, torch.Tensor]:
    def layer() -> nn.Module:
        if kind == "other":
            return nn.ReLU()
        if kind == "matmul":
            return nn.Linear(channels * side * side, channels * side * side)
        if kind == "pointwise":
            return nn.Conv2d(channels, channels, 1)
        groups = channels if kind == "depthwise" else 1
        return nn.Conv2d(channels, channels, 3, padding=1, groups=groups)

    torch.manual_seed(0)
    model = nn.Sequential(*(layer() for _ in range(length))).eval().to(dtype)
    shape = (1, channels * side * side) if kind == "matmul" else (1, channels, side, side)
    return model, torch.randn(shape).to(dtype)


def _eager_ms(
    kind: str, length: int, dtype: torch.dtype, runs: int, size: tuple[int, int] = (CHANNELS, SIDE)
) -> float:
    model, x = _eager_chain(kind, length, dtype, *size)
    with torch.inference_mode():
        return _median_ms(lambda: model(x), runs)


def _onnx_nodes(kind: str, length: int, int8: bool, channels: int = CHANNELS, side: int = SIDE):
    """One chain of ``length`` nodes, their initializers and the input's type and shape."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    conv = kind != "matmul"
    shape = [1, channels, side, side] if conv else [1, channels * side * side]
    names = [f"t{i}" for i in range(length + 1)]
    if kind == "other":  # a 1x1 max pool: defined for float and uint8 alike
        nodes = [
            helper.make_node("MaxPool", [a], [b], kernel_shape=[1, 1])
            for a, b in zip(names[:-1], names[1:], strict=True)
        ]
        return nodes, [], TensorProto.UINT8 if int8 else TensorProto.FLOAT, shape
    if conv:
        group = channels if kind == "depthwise" else 1
        taps = 1 if kind == "pointwise" else 3
        weight_shape = (channels, channels // group, taps, taps)
        attrs = {"group": group, "pads": [taps // 2] * 4}
    else:
        weight_shape, attrs = (channels * side * side,) * 2, {}
    if not int8:
        op = "Conv" if conv else "MatMul"
        weight = rng.standard_normal(weight_shape).astype(np.float32) * 0.1
        nodes = [
            helper.make_node(op, [a, "w"], [b], **attrs)
            for a, b in zip(names[:-1], names[1:], strict=True)
        ]
        return nodes, [numpy_helper.from_array(weight, "w")], TensorProto.FLOAT, shape
    op = "QLinearConv" if conv else "QLinearMatMul"
    constants = {
        "s": np.array(0.05, np.float32),
        "z": np.array(128, np.uint8),
        "w": rng.integers(-127, 128, weight_shape, dtype=np.int8),
        "ws": np.array(0.01, np.float32),
        "wz": np.array(0, np.int8),
    }
    inputs = ["s", "z", "w", "ws", "wz", "s", "z"]
    nodes = [
        helper.make_node(op, [a, *inputs], [b], **attrs)
        for a, b in zip(names[:-1], names[1:], strict=True)
    ]
    initializers = [numpy_helper.from_array(value, name) for name, value in constants.items()]
    return nodes, initializers, TensorProto.UINT8, shape


def _onnxruntime_ms(
    kind: str,
    length: int,
    int8: bool,
    threads: int,
    runs: int,
    size: tuple[int, int] = (CHANNELS, SIDE),
) -> float:
    from onnx import helper

    nodes, initializers, elem, shape = _onnx_nodes(kind, length, int8, *size)
    graph = helper.make_graph(
        nodes,
        f"op_cost_{kind}_{length}",
        [helper.make_tensor_value_info("t0", elem, shape)],
        [helper.make_tensor_value_info(f"t{length}", elem, shape)],
        initializers,
    )
    session = _probe_session(graph, threads)
    dtype = np.uint8 if int8 else np.float32
    feed = {"t0": np.full(shape, 1, dtype=dtype)}
    return _median_ms(lambda: session.run(None, feed), runs)


def probe_op_costs(backend: str, threads: int, *, runs: int = RUNS, chain: int = CHAIN) -> OpCosts:
    """The fixed cost of one operator call of each kind on ``backend`` (a CPU backend), and
    each kind's curve of one operator's time against its FLOPs."""
    if backend not in CPU_BACKENDS:
        raise ValueError(f"the overhead model probes the CPU backends only, not {backend!r}")

    def chain_ms(kind: str, length: int, size: tuple[int, int], repeats: int) -> float:
        if backend.startswith("cpu-onnxruntime"):
            int8 = backend.endswith("-int8")
            return _onnxruntime_ms(kind, length, int8, threads, repeats, size)
        dtype = torch.bfloat16 if backend.endswith("-bf16") else torch.float32
        return _eager_ms(kind, length, dtype, repeats, size)

    previous = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        per_op: dict[str, float] = {}
        calls = []
        curves: dict[str, list[list[float]]] = {}
        for kind in OP_KINDS:
            sizes = CURVE_SIZES.get(kind, ((CHANNELS, SIDE),))
            curve = []
            for index, size in enumerate(sizes):
                # the larger sizes take milliseconds a chain: fewer repeats suffice
                repeats = runs if index == 0 else max(runs // 5, 5)
                one, many = (chain_ms(kind, n, size, repeats) for n in (1, chain))
                op_ms = max((many - one) / (chain - 1), 0.0)
                if index == 0:
                    per_op[kind] = op_ms
                    calls.append(max(one - op_ms, 0.0))
                if kind != "other":
                    curve.append([float(op_flops(kind, *size)), op_ms])
            if curve:
                curves[kind] = curve
    finally:
        torch.set_num_threads(previous)
    return OpCosts(
        backend=backend,
        conv_ms=per_op["conv"],
        depthwise_ms=per_op["depthwise"],
        matmul_ms=per_op["matmul"],
        call_ms=min(calls),
        other_ms=per_op["other"],
        chain=chain,
        pointwise_ms=per_op["pointwise"],
        curves=curves,
    )


def expected_ms(
    costs: list[LayerCost],
    peak: MachinePeak,
    op_costs: OpCosts,
    other_ops: int = 0,
    alone_ms: Mapping[str, float] | None = None,
) -> float:
    """The model: call cost + sum over layers of max(layer floor, the layer's cost) + the
    operators without weights the backend runs (``other_ops``) at their per-op cost. A layer's
    cost is its time alone at its own shape where ``alone_ms`` has it, else its kind's curve."""
    layers = sum(layer_expected_ms(cost, peak, op_costs, alone_ms) for cost in costs)
    return float(op_costs.call_ms + layers + other_ops * op_costs.other_ms)


def layer_expected_ms(
    cost: LayerCost,
    peak: MachinePeak,
    op_costs: OpCosts,
    alone_ms: Mapping[str, float] | None = None,
) -> float:
    """One layer's share of the model: its floor, or its cost (alone, or on the curve) if
    larger."""
    alone = (alone_ms or {}).get(cost.name)
    return max(cost.bound_ms(peak), op_costs.per_op_ms(cost) if alone is None else alone)


def most_above_floor(
    costs: list[LayerCost], measured_ms: dict[str, float], peak: MachinePeak, count: int = 5
) -> list[dict[str, Any]]:
    """The ``count`` layers with the most measured milliseconds above their own floor."""
    rows = [
        {
            "name": cost.name,
            "kind": cost.kind,
            "op": op_kind(cost),
            "measured_ms": measured_ms[cost.name],
            "floor_ms": cost.bound_ms(peak),
            "above_floor_ms": measured_ms[cost.name] - cost.bound_ms(peak),
            "level": cost.level(peak),
        }
        for cost in costs
        if cost.name in measured_ms
    ]
    return sorted(rows, key=lambda row: row["above_floor_ms"], reverse=True)[:count]


def cached_op_costs(cache_dir, backend: str, threads: int, *, refresh: bool = False) -> OpCosts:
    """:func:`probe_op_costs`, probed once per machine, backend and threads (beside the peak)."""
    base = peak_cache_path(cache_dir, "cpu", threads)
    path = base.with_name(f"{base.stem}-opcost-{backend}.json")
    if not refresh and path.is_file():
        try:
            data = json.loads(path.read_text())
            if data.get("curves"):  # an entry from before the curves is probed again
                return OpCosts(**data)
        except (OSError, ValueError, TypeError):
            pass  # corrupt or from another version: probe again
    costs = probe_op_costs(backend, threads)
    files.write_json(path, costs.to_dict())
    return costs


def furthest_below_floor(
    costs: list[LayerCost], measured_ms: dict[str, float], peak: MachinePeak
) -> dict[str, Any] | None:
    """The timed layer with the smallest measured / floor ratio (``None``: none timed)."""
    rows = [
        {
            "name": cost.name,
            "measured_ms": measured_ms[cost.name],
            "floor_ms": cost.bound_ms(peak),
            "ratio": measured_ms[cost.name] / cost.bound_ms(peak),
            "level": cost.level(peak),
        }
        for cost in costs
        if cost.name in measured_ms and cost.bound_ms(peak) > 0
    ]
    return min(rows, key=lambda row: row["ratio"]) if rows else None


def floor_figures(
    costs: list[LayerCost],
    peak: MachinePeak,
    p50_ms: float,
    measured_ms: dict[str, float],
    op_costs: OpCosts | None,
    other_ops: int = 0,
    alone_ms: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """The floor, the cold-cache floor and (with ``op_costs``) the model's expected time
    (``alone_ms``: the layers timed alone, :func:`~archbench.measure.layer_probes.cached_layer_ms`).

    ``p50_over_floor`` below 1 means the floor is wrong (a measurement cannot beat it);
    ``p50_over_expected`` is a model's ratio, either side of 1.
    """
    floor = layerwise_bound_ms(costs, peak)
    floor_dram = layerwise_bound_dram_ms(costs, peak)
    figures: dict[str, Any] = {
        "peak_format": peak.numeric_format,
        "floor_ms": floor,
        "floor_dram_ms": floor_dram,
        "p50_over_floor": p50_ms / floor if floor > 0 else None,
        "layers_most_above_floor": most_above_floor(costs, measured_ms, peak),
        "layer_furthest_below_floor": furthest_below_floor(costs, measured_ms, peak),
    }
    if op_costs is None:
        return figures
    alone_ms = alone_ms or {}
    expected = expected_ms(costs, peak, op_costs, other_ops, alone_ms)
    model = {
        "kind": "model, not a bound",
        **op_costs.to_dict(),
        "other_ops": other_ops,
        "layers_alone": len(alone_ms),  # the rest are read off their kind's curve
    }
    timed = [cost for cost in costs if cost.name in measured_ms]
    return {
        **figures,
        "overhead_model": model,
        "expected_ms": expected,
        "p50_over_expected": p50_ms / expected if expected > 0 else None,
        # the timed layers alone, measured and modelled: kernels slower than the model's curve
        # show here, time between the layers (reorders, unweighted operators) does not
        "timed_layers_ms": sum(measured_ms[cost.name] for cost in timed),
        "timed_layers_expected_ms": sum(
            layer_expected_ms(cost, peak, op_costs, alone_ms) for cost in timed
        ),
    }
