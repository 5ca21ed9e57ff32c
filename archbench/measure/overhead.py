"""An overhead model (a model, not a bound): what a network should take, not what it must.

No roofline term captures the fixed cost of running one operator: on ONNX Runtime a depthwise
node costs microseconds whatever its size, so a network of many small layers sits far above
its floor however good the engine is. :func:`probe_op_costs` measures, per backend, the fixed
cost of one operator call (a tiny convolution, a tiny depthwise convolution, a tiny matrix
product) as the slope of a chain of ``CHAIN`` such operators against one, and the fixed cost
of the call itself (the one-node chain less its operator). Then

    expected = call cost + sum over layers of max(layer floor, the layer's per-op cost)

where compute-only entries (BatchNorm, fused activations) add their floor only. A measurement
may be below "expected" (it is no bound); p50 / expected says how much a network loses to
something other than per-operator overhead and its floor.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import files
from .layerwise import (
    TRAFFIC_LAYERS,
    WEIGHTED_OPS,
    LayerCost,
    layerwise_bound_dram_ms,
    layerwise_bound_ms,
)
from .onnxrt import create_session
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
OP_KINDS = ("conv", "depthwise", "matmul", "other")
CPU_BACKENDS = ("cpu-eager", "cpu-eager-bf16", "cpu-onnxruntime", "cpu-onnxruntime-int8")


@dataclass(frozen=True)
class OpCosts:
    """Milliseconds of one operator call of each kind, and of the call around them."""

    backend: str
    conv_ms: float
    depthwise_ms: float
    matmul_ms: float
    call_ms: float
    other_ms: float = 0.0
    chain: int = CHAIN

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def per_op_ms(self, cost: LayerCost) -> float:
        """The fixed cost the backend pays to run this layer (0 for a fused entry)."""
        kind = op_kind(cost)
        return 0.0 if kind is None else getattr(self, f"{kind}_ms")


def op_kind(cost: LayerCost) -> str | None:
    """``conv``, ``depthwise``, ``matmul``, or ``None`` for a compute-only (fused) entry."""
    if cost.weight_shape is None:
        return None
    if cost.kind == "Linear":
        return "matmul"
    if cost.groups > 1 and len(cost.weight_shape) >= 2 and cost.weight_shape[1] == 1:
        return "depthwise"
    return "conv"


def _median_ms(fn: Callable[[], Any], runs: int) -> float:
    for _ in range(max(runs // 10, 3)):
        fn()
    samples = []
    for _ in range(runs):
        start = time.perf_counter_ns()
        fn()
        samples.append(time.perf_counter_ns() - start)
    return statistics.median(samples) / 1e6


def _eager_chain(kind: str, length: int, dtype: torch.dtype) -> tuple[nn.Module, torch.Tensor]:
    def layer() -> nn.Module:
        if kind == "other":
            return nn.ReLU()
        if kind == "matmul":
            return nn.Linear(CHANNELS * SIDE * SIDE, CHANNELS * SIDE * SIDE)
        groups = CHANNELS if kind == "depthwise" else 1
        return nn.Conv2d(CHANNELS, CHANNELS, 3, padding=1, groups=groups)

    torch.manual_seed(0)
    model = nn.Sequential(*(layer() for _ in range(length))).eval().to(dtype)
    shape = (1, CHANNELS * SIDE * SIDE) if kind == "matmul" else (1, CHANNELS, SIDE, SIDE)
    return model, torch.randn(shape).to(dtype)


def _eager_ms(kind: str, length: int, dtype: torch.dtype, runs: int) -> float:
    model, x = _eager_chain(kind, length, dtype)
    with torch.inference_mode():
        return _median_ms(lambda: model(x), runs)


def _onnx_nodes(kind: str, length: int, int8: bool):
    """One chain of ``length`` tiny nodes, their initializers and the input's type and shape."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    conv = kind != "matmul"
    shape = [1, CHANNELS, SIDE, SIDE] if conv else [1, CHANNELS * SIDE * SIDE]
    names = [f"t{i}" for i in range(length + 1)]
    if kind == "other":  # a 1x1 max pool: defined for float and uint8 alike
        nodes = [
            helper.make_node("MaxPool", [a], [b], kernel_shape=[1, 1])
            for a, b in zip(names[:-1], names[1:], strict=True)
        ]
        return nodes, [], TensorProto.UINT8 if int8 else TensorProto.FLOAT, shape
    if conv:
        group = CHANNELS if kind == "depthwise" else 1
        weight_shape = (CHANNELS, CHANNELS // group, 3, 3)
        attrs = {"group": group, "pads": [1, 1, 1, 1]}
    else:
        weight_shape, attrs = (CHANNELS * SIDE * SIDE,) * 2, {}
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


def _onnxruntime_ms(kind: str, length: int, int8: bool, threads: int, runs: int) -> float:
    from onnx import helper

    nodes, initializers, elem, shape = _onnx_nodes(kind, length, int8)
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
    """The fixed cost of one operator call of each kind on ``backend`` (a CPU backend)."""
    if backend not in CPU_BACKENDS:
        raise ValueError(f"the overhead model probes the CPU backends only, not {backend!r}")
    previous = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        per_op: dict[str, float] = {}
        calls = []
        for kind in OP_KINDS:
            if backend.startswith("cpu-onnxruntime"):
                int8 = backend.endswith("-int8")
                one, many = (_onnxruntime_ms(kind, n, int8, threads, runs) for n in (1, chain))
            else:
                dtype = torch.bfloat16 if backend.endswith("-bf16") else torch.float32
                one, many = (_eager_ms(kind, n, dtype, runs) for n in (1, chain))
            per_op[kind] = max((many - one) / (chain - 1), 0.0)
            calls.append(max(one - per_op[kind], 0.0))
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
    )


def expected_ms(
    costs: list[LayerCost], peak: MachinePeak, op_costs: OpCosts, other_ops: int = 0
) -> float:
    """The model: call cost + sum over layers of max(layer floor, the layer's per-op cost)
    + the operators without weights the backend runs (``other_ops``) at their per-op cost."""
    layers = sum(max(cost.bound_ms(peak), op_costs.per_op_ms(cost)) for cost in costs)
    return float(op_costs.call_ms + layers + other_ops * op_costs.other_ms)


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
            if "other_ms" in data:  # an entry from before the "other" probe is probed again
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
) -> dict[str, Any]:
    """The floor, the cold-cache floor and (with ``op_costs``) the model's expected time.

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
    expected = expected_ms(costs, peak, op_costs, other_ops)
    model = {"kind": "model, not a bound", **op_costs.to_dict(), "other_ops": other_ops}
    return {
        **figures,
        "overhead_model": model,
        "expected_ms": expected,
        "p50_over_expected": p50_ms / expected if expected > 0 else None,
    }


def count_other_ops(
    backend: str, model: nn.Module, onnx_path, sample: torch.Tensor, threads
) -> int:
    """How many operators without weights one forward pass runs on ``backend``.

    ONNX Runtime: the nodes its profiler times in one run of the optimized graph that are not a
    convolution or matrix product. Eager PyTorch: the calls of leaf modules that are not
    convolutions or linear layers (functional calls are not counted).
    """
    if backend.startswith("cpu-onnxruntime"):
        return _onnxruntime_other_ops(onnx_path, sample, threads)
    counted = [0]

    def hook(module, inputs, output):
        counted[0] += 1

    handles = [
        module.register_forward_hook(hook)
        for module in model.modules()
        if not list(module.children()) and not isinstance(module, TRAFFIC_LAYERS)
    ]
    try:
        with torch.inference_mode():
            dtype = next(model.parameters()).dtype
            model(sample.to(dtype))
    finally:
        for handle in handles:
            handle.remove()
    return counted[0]


def _onnxruntime_other_ops(onnx_path, sample: torch.Tensor, threads) -> int:
    feed = sample.detach().to("cpu", torch.float32).contiguous().numpy()
    with tempfile.TemporaryDirectory(prefix="archbench-ortops-") as work:
        opened = create_session(
            Path(onnx_path), threads=threads, profile_prefix=str(Path(work) / "ops")
        )
        opened.session.run(None, {opened.input_name: feed})
        trace = json.loads(Path(opened.session.end_profiling()).read_text())
    return sum(
        1
        for event in trace
        if event.get("cat") == "Node"
        and event.get("name", "").endswith("_kernel_time")
        and event.get("args", {}).get("op_name") not in WEIGHTED_OPS
    )
