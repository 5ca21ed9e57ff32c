"""What the overhead model takes from the network itself: each layer timed alone at its own
shape, and how many operators without weights the backend runs.

The operator curves of :mod:`archbench.measure.overhead` are probed at square shapes (as many
output channels as input) and read at a layer's FLOPs. Real layers are not square: a Fire
module's squeeze (128 -> 16 channels, 1x1) or a stride-2 first convolution runs well below a
square probe of the same FLOPs, so a curve-only model undercounts the small networks. Here each
convolution and linear layer is built again, alone, with its own input shape, kernel, stride,
padding and groups, on the backend that runs the network, and timed.

Each copy has its own weights, as many copies as come nearest the network's weights together
(2 to :data:`MAX_COPIES`), all reading the same input: a layer of a network whose weights
overflow the caches finds its weights as cold as in the network, one of a small network finds
them warm. A layer's time is the lesser of two estimates from ``N`` copies and one, each too
high in a different regime: the slope ``(t_N - t_1) / (N - 1)`` cancels the call, the feeding
of the input and (ONNX Runtime) its layout reorder, but counts a lone copy's warmer weights
against it; ``t_N / N`` spreads those fixed costs over the copies, negligible for a layer
streaming megabytes. What stays in: each copy's output written (and on ONNX Runtime taken out
of its blocked layout) as the next layer's input would be. A model, not a bound.
"""

from __future__ import annotations

import copy
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import files
from .backends import EAGER_DTYPES
from .layerwise import TRAFFIC_LAYERS, WEIGHTED_OPS, LayerCost
from .onnxrt import create_session, in_memory_initializer
from .roofline import _probe_session, peak_cache_path

MAX_COPIES = 8
PROBE_SECONDS = 0.05  # per timed graph: at least 10 samples, at most 200 (cached per shape)
EAGER_BACKENDS = ("cpu-eager", "cpu-eager-bf16")
ORT_BACKENDS = ("cpu-onnxruntime", "cpu-onnxruntime-int8")


def _median_ms(fn: Callable[[], Any]) -> float:
    """Median milliseconds of ``fn`` over as many calls as fit :data:`PROBE_SECONDS`."""
    for _ in range(3):
        fn()
    start = time.perf_counter_ns()
    fn()
    once = max((time.perf_counter_ns() - start) / 1e9, 1e-6)
    samples = []
    for _ in range(int(min(max(PROBE_SECONDS / once, 10), 200))):
        start = time.perf_counter_ns()
        fn()
        samples.append(time.perf_counter_ns() - start)
    return statistics.median(samples) / 1e6


def copies_for(cost: LayerCost, network_weight_bytes: int) -> int:
    """As many copies as come nearest the network's weights, between 2 and :data:`MAX_COPIES`."""
    wanted = round(network_weight_bytes / max(cost.weight_bytes, 1))
    return int(min(max(wanted, 2), MAX_COPIES))


def per_copy_ms(many_ms: float, one_ms: float, copies: int) -> float:
    """One copy's milliseconds: the lesser of the slope and the mean (module docstring)."""
    return min((many_ms - one_ms) / (copies - 1), many_ms / copies)


def probeable(module: nn.Module, cost: LayerCost) -> bool:
    """A 2-d convolution with zero padding or a linear layer, seen on a batch-1 input."""
    if cost.input_shape is None or cost.input_shape[0] != 1:
        return False
    if isinstance(module, nn.Linear):
        return len(cost.input_shape) == 2
    return (
        isinstance(module, nn.Conv2d)
        and module.padding_mode == "zeros"
        and not isinstance(module.padding, str)
        and len(cost.input_shape) == 4
    )


def _signature(backend: str, module: nn.Module, cost: LayerCost, copies: int) -> str:
    if isinstance(module, nn.Linear):
        layout = f"linear{module.in_features}x{module.out_features}b{module.bias is not None}"
    else:
        layout = (
            f"conv{module.in_channels}x{module.out_channels}k{module.kernel_size}"
            f"s{module.stride}p{module.padding}d{module.dilation}g{module.groups}"
            f"b{module.bias is not None}"
        )
    return f"{backend}|{layout}|in{tuple(cost.input_shape)}|x{copies}"


def _eager_ms(module: nn.Module, cost: LayerCost, dtype: torch.dtype, copies: int) -> float:
    generator = torch.Generator().manual_seed(0)
    layers = []
    for _ in range(copies):
        layer = copy.deepcopy(module).to(torch.float32)
        with torch.no_grad():
            for parameter in layer.parameters():
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.05)
        layers.append(layer.eval().to(dtype))
    x = torch.randn(cost.input_shape, generator=generator).to(dtype)

    def run(count: int) -> Callable[[], Any]:
        chosen = layers[:count]
        return lambda: [layer(x) for layer in chosen]

    with torch.inference_mode():
        return per_copy_ms(_median_ms(run(copies)), _median_ms(run(1)), copies)


def onnx_probe_graph(
    module: nn.Module, input_shape, copies: int, *, int8: bool, own_weights: bool = False
):
    """``copies`` side-by-side nodes computing ``module`` on one input: the graph, and the
    external initializers' data by name (kept out of the protobuf: weights may be large).

    fp32: ``Conv`` / ``Gemm`` with random weights (``own_weights``: one copy with the
    module's own, to check that the graph computes the layer); int8: ``QLinearConv`` /
    ``QLinearMatMul`` on uint8 activations.
    """
    from onnx import TensorProto, helper

    rng = np.random.default_rng(0)
    linear = isinstance(module, nn.Linear)
    elem = TensorProto.UINT8 if int8 else TensorProto.FLOAT
    weight = module.weight.detach().to(torch.float32).cpu().numpy()
    bias = None if module.bias is None else module.bias.detach().to(torch.float32).cpu().numpy()
    output_shape = list(module(torch.zeros(input_shape, dtype=module.weight.dtype)).shape)
    if linear:
        attrs: dict[str, Any] = {} if int8 else {"transB": 1}
    else:
        attrs = {
            "kernel_shape": list(module.kernel_size),
            "strides": list(module.stride),
            "pads": list(module.padding) * 2,
            "dilations": list(module.dilation),
            "group": module.groups,
        }
    data: dict[str, np.ndarray] = {}
    nodes, outputs = [], []
    for index in range(copies):
        own = own_weights and copies == 1
        w = weight if own else (rng.standard_normal(weight.shape) * 0.05).astype(np.float32)
        if int8:
            w = np.clip(np.round(w / 0.002), -127, 127).astype(np.int8)
            if linear:
                w = np.ascontiguousarray(w.T)  # QLinearMatMul: x @ w
        data[f"w{index}"] = w
        inputs = ["x", f"w{index}"]
        if int8:
            data.update({"s": np.array(0.05, np.float32), "z": np.array(128, np.uint8)})
            data.update({"ws": np.array(0.002, np.float32), "wz": np.array(0, np.int8)})
            inputs = ["x", "s", "z", f"w{index}", "ws", "wz", "s", "z"]
            if bias is not None and not linear:
                data[f"b{index}"] = np.zeros(bias.shape, np.int32)
                inputs.append(f"b{index}")
        elif bias is not None:
            data[f"b{index}"] = bias if own else np.zeros(bias.shape, np.float32)
            inputs.append(f"b{index}")
        op = {(0, 0): "Conv", (0, 1): "Gemm", (1, 0): "QLinearConv", (1, 1): "QLinearMatMul"}[
            int8, linear
        ]
        nodes.append(helper.make_node(op, inputs, [f"y{index}"], **attrs))
        outputs.append(helper.make_tensor_value_info(f"y{index}", elem, output_shape))
    graph = helper.make_graph(
        nodes,
        "layer_probe",
        [helper.make_tensor_value_info("x", elem, list(input_shape))],
        outputs,
        [in_memory_initializer(name, value) for name, value in data.items()],
    )
    return graph, data


def _onnxruntime_ms(
    module: nn.Module, cost: LayerCost, int8: bool, copies: int, threads: int
) -> float:
    feed = {"x": np.full(cost.input_shape, 100, np.uint8 if int8 else np.float32)}

    def graph_ms(count: int) -> float:
        graph, data = onnx_probe_graph(module, cost.input_shape, count, int8=int8)
        session = _probe_session(graph, threads, data)
        return _median_ms(lambda: session.run(None, feed))

    return per_copy_ms(graph_ms(copies), graph_ms(1), copies)


def probe_layer_ms(
    backend: str, module: nn.Module, cost: LayerCost, copies: int, threads: int
) -> float:
    """Milliseconds of ``module`` alone at ``cost``'s input shape on ``backend`` (see the
    module docstring); never below zero."""
    if backend in EAGER_BACKENDS:
        measured = _eager_ms(module, cost, EAGER_DTYPES.get(backend, torch.float32), copies)
    elif backend in ORT_BACKENDS:
        measured = _onnxruntime_ms(module, cost, backend.endswith("-int8"), copies, threads)
    else:
        raise ValueError(f"layers are probed on the CPU backends only, not {backend!r}")
    return max(measured, 0.0)


def cached_layer_ms(
    cache_dir, backend: str, model: nn.Module, costs: list[LayerCost], threads: int
) -> dict[str, float]:
    """Layer name -> its own-shape milliseconds on ``backend``, for every probeable layer;
    each shape probed once per machine, backend and threads (cached beside the peak, so
    ``--refresh-peak`` probes them again)."""
    base = peak_cache_path(cache_dir, "cpu", threads)
    path = base.with_name(f"{base.stem}-layers-{backend}.json")
    try:
        cache = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        cache = {}  # corrupt: probe again
    modules = dict(model.named_modules())
    network_weight_bytes = sum(cost.weight_bytes for cost in costs)
    previous = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    times: dict[str, float] = {}
    try:
        for cost in costs:
            module = modules.get(cost.name)
            if module is None or not probeable(module, cost):
                continue
            copies = copies_for(cost, network_weight_bytes)
            key = _signature(backend, module, cost, copies)
            if not isinstance(cache.get(key), float):
                cache[key] = probe_layer_ms(backend, module, cost, copies, threads)
            times[cost.name] = cache[key]
    finally:
        torch.set_num_threads(previous)
    files.write_json(path, cache)
    return times


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
