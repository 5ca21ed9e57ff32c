"""A per-layer roofline bound, and measured per-layer times to compare with it.

The whole-network bound (``roofline.roofline``: total FLOPs / peak against weights / bandwidth)
credits every layer with the network's average arithmetic intensity: a depthwise convolution,
which does 9 multiply-adds per activation it reads, is treated as if it were as dense as the 1x1
convolutions beside it, and activation traffic is ignored. The honest floor is per layer:

    bound = sum over layers of max(FLOPs / peak FLOP/s, bytes / bandwidth)

where a layer's bytes are its weights (and bias) read once plus its input activations read once
and its output activations written once. What counts as a layer, and why the sum stays a floor:

* convolutions and linear layers are the layers: each is one kernel in eager PyTorch and in
  ONNX Runtime, which must read its input and write its output;
* other modules with multiply-adds (BatchNorm, pooling with fvcore counts) and multiply-adds
  outside any leaf module add their compute time only: BatchNorm and activations are fused into
  the preceding convolution by ONNX Runtime, so their traffic is not compulsory;
* concatenation, ReLU and pooling traffic is left out.

So the layer-wise bound is never below the aggregate compute bound (every FLOP is counted once)
and is a floor for any backend that runs each convolution as one kernel.

Measured per-layer times, so the layers furthest from their bound can be named:

* eager PyTorch: ``time.perf_counter_ns`` in forward pre-hooks and hooks on each layer (the
  CPU runs synchronously; hook overhead, about a microsecond, is included), median over passes;
* ONNX Runtime: the session's own profiler (``enable_profiling``), each node's kernel time,
  median over passes; nodes are matched to layers by weight and output shape (ties, e.g. the
  two same-shaped expand convolutions of a Fire module, go to the layer whose name shares the
  longest scope with the node's name, then to execution order). Fused nodes (Conv + ReLU) keep
  the convolution's weight and output shape, so the fused activation's time is counted with
  its convolution, as the bound counts its traffic.
"""

from __future__ import annotations

import json
import math
import re
import statistics
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from archbench.measure.complexity import count_macs, macs_by_layer
from archbench.measure.onnxrt import create_session
from archbench.measure.roofline import MachinePeak

FURTHEST_LAYERS = 5
LAYER_TIME_PASSES = 20
LAYER_TIME_WARMUP = 5
TRAFFIC_LAYERS = (nn.modules.conv._ConvNd, nn.Linear)


@dataclass(frozen=True)
class LayerCost:
    """One layer's compulsory work at batch 1: FLOPs (2 x MACs) and bytes moved."""

    name: str
    kind: str
    flops: int
    weight_bytes: int  # 0 for compute-only entries
    input_bytes: int
    output_bytes: int
    weight_shape: tuple[int, ...] | None = None
    output_shape: tuple[int, ...] | None = None
    groups: int = 1  # a convolution's groups (depthwise: as many as input channels)
    input_shape: tuple[int, ...] | None = None  # its first input's, where it is a tensor

    @property
    def bytes_moved(self) -> int:
        return self.weight_bytes + self.input_bytes + self.output_bytes

    def compute_ms(self, peak: MachinePeak) -> float:
        return self.flops / (peak.gflops * 1e9) * 1e3

    def level(self, peak: MachinePeak) -> str:
        """The fastest memory level this layer's working set (its bytes) fits."""
        return peak.level_for(self.bytes_moved)[0]

    def memory_ms(self, peak: MachinePeak) -> float:
        """Bytes at the bandwidth of the fastest level they fit (DRAM without cache levels)."""
        return self.bytes_moved / (peak.level_for(self.bytes_moved)[1] * 1e9) * 1e3

    def memory_dram_ms(self, peak: MachinePeak) -> float:
        """Bytes at DRAM bandwidth: the cold-cache figure."""
        return self.bytes_moved / (peak.gbps * 1e9) * 1e3

    def bound_ms(self, peak: MachinePeak) -> float:
        return max(self.compute_ms(peak), self.memory_ms(peak))

    def bound_dram_ms(self, peak: MachinePeak) -> float:
        return max(self.compute_ms(peak), self.memory_dram_ms(peak))


def _shape_of(value: Any) -> torch.Tensor | None:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)) and value and isinstance(value[0], torch.Tensor):
        return value[0]
    return None


def layer_costs(
    model: nn.Module,
    input_shape: tuple[int, ...] = (1, 3, 32, 32),
    *,
    activation_bytes: int = 4,
    weight_bytes: int | None = None,
    total_macs: int | None = None,
) -> list[LayerCost]:
    """Every layer's FLOPs and compulsory bytes for one forward pass of ``input_shape``.

    ``activation_bytes`` and ``weight_bytes`` are the bytes of one element in the format the
    backend runs (int8: 1 and 1; ``weight_bytes=None``: the parameters' own element size).

    Convolutions and linear layers carry their traffic; other leaves with multiply-adds, and
    the multiply-adds fvcore finds outside any leaf (``"(outside leaf modules)"``), carry
    compute only (see the module docstring). FLOPs sum to ``2 * count_macs(model)``.
    """
    total_macs = count_macs(model, input_shape) if total_macs is None else int(total_macs)
    leaf_macs = {row.name: row.macs for row in macs_by_layer(model, input_shape)}
    modules = dict(model.named_modules())
    seen: dict[str, dict[str, Any]] = defaultdict(lambda: {"in": 0, "out": 0, "shape": None})

    def record(name: str):
        def hook(module, inputs, output):
            first_in, out = _shape_of(inputs), _shape_of(output)
            entry = seen[name]
            entry["in"] += first_in.numel() * activation_bytes if first_in is not None else 0
            entry["out"] += out.numel() * activation_bytes if out is not None else 0
            entry["shape"] = tuple(out.shape) if out is not None else None
            entry.setdefault("input_shape", None if first_in is None else tuple(first_in.shape))

        return hook

    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    handles = [
        module.register_forward_hook(record(name))
        for name, module in modules.items()
        if isinstance(module, TRAFFIC_LAYERS)
    ]
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            model(torch.zeros(input_shape, device=device))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()

    costs: list[LayerCost] = []
    for name, macs in leaf_macs.items():
        module = modules[name]
        if isinstance(module, TRAFFIC_LAYERS) and name in seen:
            weights = sum(
                p.numel() * (weight_bytes or p.element_size()) for p in module.parameters()
            )
            weight = getattr(module, "weight", None)
            costs.append(
                LayerCost(
                    name=name,
                    kind=type(module).__name__,
                    flops=2 * int(macs),
                    weight_bytes=int(weights),
                    input_bytes=int(seen[name]["in"]),
                    output_bytes=int(seen[name]["out"]),
                    weight_shape=tuple(weight.shape) if weight is not None else None,
                    output_shape=seen[name]["shape"],
                    groups=int(getattr(module, "groups", 1)),
                    input_shape=seen[name]["input_shape"],
                )
            )
        else:
            costs.append(LayerCost(name, type(module).__name__, 2 * int(macs), 0, 0, 0))
    outside = total_macs - sum(leaf_macs.values())
    if outside > 0:
        costs.append(LayerCost("(outside leaf modules)", "functional", 2 * outside, 0, 0, 0))
    return costs


def layerwise_bound_ms(costs: list[LayerCost], peak: MachinePeak) -> float:
    """Sum over layers of max(compute time, memory time): the floor, cache levels included."""
    return float(sum(cost.bound_ms(peak) for cost in costs))


def layerwise_bound_dram_ms(costs: list[LayerCost], peak: MachinePeak) -> float:
    """The same sum with every byte from DRAM: the cold-cache floor."""
    return float(sum(cost.bound_dram_ms(peak) for cost in costs))


def furthest_from_bound(
    costs: list[LayerCost],
    measured_ms: dict[str, float],
    peak: MachinePeak,
    count: int = FURTHEST_LAYERS,
) -> list[dict[str, Any]]:
    """The ``count`` layers whose measured time is the largest multiple of their own bound."""
    rows = []
    for cost in costs:
        if cost.name not in measured_ms or cost.bound_ms(peak) <= 0:
            continue
        compute, memory = cost.compute_ms(peak), cost.memory_ms(peak)
        rows.append(
            {
                "name": cost.name,
                "kind": cost.kind,
                "measured_ms": measured_ms[cost.name],
                "bound_ms": max(compute, memory),
                "ratio": measured_ms[cost.name] / max(compute, memory),
                "bound": "compute" if compute >= memory else "memory",
                "level": cost.level(peak),
                "flops": cost.flops,
                "bytes": cost.bytes_moved,
            }
        )
    return sorted(rows, key=lambda row: row["ratio"], reverse=True)[:count]


def layerwise_roofline(
    costs: list[LayerCost], peak: MachinePeak, p50_ms: float, measured_ms: dict[str, float]
) -> dict[str, Any]:
    """The ``roofline[backend]`` entries this module adds: bound, ratio, the furthest layers."""
    bound = layerwise_bound_ms(costs, peak)
    return {
        "layerwise_bound_ms": bound,
        "layerwise_ratio": p50_ms / bound if bound > 0 else None,
        "layers_timed": len(measured_ms),
        "layers_furthest_from_bound": furthest_from_bound(costs, measured_ms, peak),
    }


# ------------------------------------------------------------------------------ eager times


def eager_layer_times(
    model: nn.Module,
    sample: torch.Tensor,
    costs: list[LayerCost],
    *,
    passes: int = LAYER_TIME_PASSES,
    warmup: int = LAYER_TIME_WARMUP,
) -> dict[str, float]:
    """Median milliseconds per pass spent inside each layer's module (CPU, synchronous)."""
    modules = dict(model.named_modules())
    layer_names = [cost.name for cost in costs if cost.output_shape is not None]
    starts: dict[str, int] = {}
    spent: dict[str, list[int]] = defaultdict(list)
    current: dict[str, int] = defaultdict(int)

    def before(name: str):
        def hook(module, inputs):
            starts[name] = time.perf_counter_ns()

        return hook

    def after(name: str):
        def hook(module, inputs, output):
            current[name] += time.perf_counter_ns() - starts[name]

        return hook

    handles = []
    for name in layer_names:
        if name in modules:
            handles.append(modules[name].register_forward_pre_hook(before(name)))
            handles.append(modules[name].register_forward_hook(after(name)))
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for index in range(warmup + passes):
                current.clear()
                model(sample)
                if index >= warmup:
                    for name, ns in current.items():
                        spent[name].append(ns)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return {name: statistics.median(values) / 1e6 for name, values in spent.items()}


# ------------------------------------------------------------------------------ ORT times

_NODE_SUFFIX = re.compile(r"(_output_\d+.*|_token_\d+)?_kernel_time$")
# ONNX Runtime ops that are one convolution or matrix product (fp32, fused, or quantized).
WEIGHTED_OPS = {
    "Conv",
    "FusedConv",
    "NhwcFusedConv",
    "QLinearConv",
    "ConvInteger",
    "Gemm",
    "FusedGemm",
    "QGemm",
    "MatMul",
    "FusedMatMul",
    "MatMulInteger",
    "QLinearMatMul",
}


def _scope_tokens(node_name: str) -> list[str]:
    """``/features/features.2/squeeze/act/Relu_output_0_nchwc`` -> features.2.squeeze.act."""
    parts = [part for part in _NODE_SUFFIX.sub("", node_name).split("/") if part][:-1]
    tokens: list[str] = []
    previous = None
    for part in parts:
        nested = previous is not None and part.startswith(f"{previous}.")
        tokens.append(part[len(previous) + 1 :] if nested else part)
        previous = part
    return ".".join(tokens).split(".") if tokens else []


def _common_prefix(a: list[str], b: list[str]) -> int:
    count = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        count += 1
    return count


def match_nodes_to_layers(nodes: list[dict[str, Any]], costs: list[LayerCost]) -> dict[str, str]:
    """Node name -> layer name for the convolution and matrix-product nodes of a profile.

    ``nodes`` are ``{"name", "input_shapes", "output_shape"}`` in execution order. A node can
    be any layer whose output has as many elements (layouts differ: int8 runs NHWC); a layer
    whose weight shape is among the node's inputs comes first (int8 nodes hold their weights
    prepacked, without a shape), then the one sharing the longest scope with the node's name
    (fused nodes are named after their activation, quantized ones after their convolution),
    then the first in execution order.
    """
    free = [cost for cost in costs if cost.output_shape is not None]
    matched: dict[str, str] = {}
    for node in nodes:
        shapes = {tuple(shape) for shape in node["input_shapes"]}
        numel = math.prod(node["output_shape"])
        candidates = [cost for cost in free if math.prod(cost.output_shape) == numel]
        if not candidates:
            continue
        scope = _scope_tokens(node["name"])
        best = max(
            candidates,
            key=lambda cost: (
                cost.weight_shape in shapes,
                _common_prefix(cost.name.split("."), scope),
            ),
        )
        matched[node["name"]] = best.name
        free.remove(best)
    return matched


def _shapes(entries: list[dict[str, list[int]]]) -> list[list[int]]:
    return [next(iter(entry.values())) for entry in entries if entry]


def onnxruntime_layer_times(
    onnx_path: Path,
    sample: torch.Tensor,
    costs: list[LayerCost],
    *,
    threads: int | None,
    passes: int = LAYER_TIME_PASSES,
    warmup: int = LAYER_TIME_WARMUP,
) -> dict[str, float]:
    """Median kernel milliseconds per layer from ONNX Runtime's own profiler."""
    feed = sample.detach().to("cpu", torch.float32).contiguous().numpy()
    with tempfile.TemporaryDirectory(prefix="archbench-ortprof-") as work:
        opened = create_session(
            Path(onnx_path), threads=threads, profile_prefix=str(Path(work) / "layers")
        )
        session, name = opened.session, opened.input_name
        for _ in range(warmup + passes):
            session.run(None, {name: feed})
        trace = json.loads(Path(session.end_profiling()).read_text())
    per_node: dict[str, list[float]] = defaultdict(list)
    first_seen: dict[str, dict[str, Any]] = {}
    for event in trace:
        if event.get("cat") != "Node" or not event.get("name", "").endswith("_kernel_time"):
            continue
        args = event.get("args", {})
        if args.get("op_name") not in WEIGHTED_OPS:
            continue
        per_node[event["name"]].append(float(event.get("dur", 0)) / 1e3)  # us -> ms
        outputs = _shapes(args.get("output_type_shape", []))
        if event["name"] not in first_seen and outputs:
            first_seen[event["name"]] = {
                "name": event["name"],
                "input_shapes": _shapes(args.get("input_type_shape", [])),
                "output_shape": outputs[0],
            }
    matched = match_nodes_to_layers(list(first_seen.values()), costs)
    times: dict[str, float] = {}
    for node, layer in matched.items():
        durations = per_node[node][warmup:] or per_node[node]
        times[layer] = statistics.median(durations)
    return times


CSV_HEADER = [
    "format",
    "layer",
    "kind",
    "flops",
    "bytes",
    "level",
    "compute_ms",
    "memory_ms",
    "memory_dram_ms",
    "floor_ms",
    "floor_dram_ms",
    "bound",
]


def layer_costs_to_csv_rows(costs: list[LayerCost], peak: MachinePeak) -> list[list[Any]]:
    """Rows of ``layerwise_roofline.csv`` (:data:`CSV_HEADER`) for one format's peak and bytes.

    ``level`` is the fastest memory level the layer's working set fits, where ``memory_ms``
    charges its bytes; ``memory_dram_ms`` charges them at DRAM bandwidth (cold caches).
    """
    return [
        [
            peak.numeric_format,
            cost.name,
            cost.kind,
            cost.flops,
            cost.bytes_moved,
            cost.level(peak),
            f"{cost.compute_ms(peak):.6f}",
            f"{cost.memory_ms(peak):.6f}",
            f"{cost.memory_dram_ms(peak):.6f}",
            f"{cost.bound_ms(peak):.6f}",
            f"{cost.bound_dram_ms(peak):.6f}",
            "compute" if cost.compute_ms(peak) >= cost.memory_ms(peak) else "memory",
        ]
        for cost in costs
    ]
