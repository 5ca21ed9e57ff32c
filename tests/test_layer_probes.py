"""Each layer timed alone at its own shape (the overhead model's per-layer cost): the probe
graphs compute the layer they stand for, the copies follow the network's weights, what cannot
be probed falls back to the curve, the probes are cached beside the peak; and the operators
without weights each backend runs are counted."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from archbench.measure import layer_probes
from archbench.measure.export import export_onnx
from archbench.measure.layer_probes import (
    MAX_COPIES,
    cached_layer_ms,
    copies_for,
    count_other_ops,
    onnx_probe_graph,
    per_copy_ms,
    probeable,
)
from archbench.measure.layerwise import LayerCost, layer_costs
from archbench.measure.overhead import OpCosts, expected_ms, floor_figures
from archbench.measure.roofline import (
    MachinePeak,
    _probe_session,
    forget_cached_probes,
    peak_cache_path,
)

THREADS = 1


class Mixed(nn.Module):
    """Shapes a square probe does not have: stride 2, asymmetric padding, 16 -> 4 channels,
    a depthwise layer, a linear head, and one layer that cannot be probed (reflect padding)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, stride=2, padding=(1, 0))
        self.depthwise = nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False)
        self.squeeze = nn.Conv2d(16, 4, 1)
        self.reflect = nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect")
        self.fc = nn.Linear(4 * 4 * 3, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.reflect(self.squeeze(self.depthwise(self.stem(x))))
        return self.fc(torch.flatten(x, 1))


def _costs():
    torch.manual_seed(0)
    model = Mixed().eval()
    return model, layer_costs(model, (1, 3, 8, 8))


def _peak() -> MachinePeak:
    return MachinePeak(10.0, 10.0, "cpu", 1, 0, 0, "2026-01-01T00:00:00+00:00")


def test_layer_costs_record_each_layers_input_shape():
    _, costs = _costs()
    shapes = {cost.name: cost.input_shape for cost in costs}
    assert shapes == {
        "stem": (1, 3, 8, 8),
        "depthwise": (1, 16, 4, 3),
        "squeeze": (1, 16, 4, 3),
        "reflect": (1, 4, 4, 3),
        "fc": (1, 48),
    }


@pytest.mark.parametrize("name", ["stem", "depthwise", "squeeze", "fc"])
def test_a_one_copy_fp32_probe_computes_its_layer(name):
    model, costs = _costs()
    cost = next(cost for cost in costs if cost.name == name)
    module = model.get_submodule(name)
    graph, data = onnx_probe_graph(module, cost.input_shape, 1, int8=False, own_weights=True)
    session = _probe_session(graph, THREADS, data)
    x = torch.randn(cost.input_shape)
    (probed,) = session.run(None, {"x": x.numpy()})
    with torch.no_grad():
        expected = module(x).numpy()
    assert probed.shape == expected.shape == tuple(cost.output_shape)
    np.testing.assert_allclose(probed, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["stem", "depthwise", "squeeze", "fc"])
def test_an_int8_probe_has_one_quantized_node_a_copy_with_the_layers_output(name):
    model, costs = _costs()
    cost = next(cost for cost in costs if cost.name == name)
    graph, data = onnx_probe_graph(model.get_submodule(name), cost.input_shape, 3, int8=True)
    op = "QLinearMatMul" if name == "fc" else "QLinearConv"
    assert [node.op_type for node in graph.node] == [op] * 3
    weights = {key: value for key, value in data.items() if key[0] == "w" and key[1:].isdigit()}
    assert len(weights) == 3 and all(value.dtype == np.int8 for value in weights.values())
    # each copy its own weights: together they take the cache a network's weights would
    assert len({value.tobytes() for value in weights.values()}) == 3
    outputs = _probe_session(graph, THREADS, data).run(
        None, {"x": np.full(cost.input_shape, 100, np.uint8)}
    )
    assert [output.shape for output in outputs] == [tuple(cost.output_shape)] * 3
    assert all(output.dtype == np.uint8 for output in outputs)


def test_copies_follow_the_networks_weights_between_two_and_the_cap():
    layer = LayerCost("l", "Conv2d", 1, weight_bytes=1000, input_bytes=0, output_bytes=0)
    assert copies_for(layer, network_weight_bytes=1000) == 2  # a slope needs two
    assert copies_for(layer, network_weight_bytes=3400) == 3  # the nearest: 3 MB against 3.4
    assert copies_for(layer, network_weight_bytes=10**9) == MAX_COPIES


def test_a_copys_time_is_the_lesser_of_the_slope_and_the_mean():
    # small layer: 10 us each, 30 us of call and input around them -> the slope
    assert per_copy_ms(many_ms=0.030 + 8 * 0.010, one_ms=0.030 + 0.010, copies=8) == pytest.approx(
        0.010
    )
    # large layer, 2 copies of 1.5 ms cycling their weights, a lone copy warm at 1.0 ms: the
    # slope (2.0) counts the lone copy's warmth against it, the mean (1.5 + call / 2) does not
    assert per_copy_ms(many_ms=3.005, one_ms=1.005, copies=2) == pytest.approx(1.5025)


def test_what_cannot_be_probed_is_named_and_left_to_the_curve():
    model, costs = _costs()
    by_name = {cost.name: cost for cost in costs}
    assert probeable(model.stem, by_name["stem"]) and probeable(model.fc, by_name["fc"])
    assert not probeable(model.reflect, by_name["reflect"])  # ONNX Conv pads with zeros only
    same = nn.Conv2d(4, 4, 3, padding="same")
    assert not probeable(same, by_name["reflect"])
    batch2 = LayerCost("stem", "Conv2d", 1, 1, 1, 1, input_shape=(2, 3, 8, 8))
    assert not probeable(model.stem, batch2)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["cpu-eager", "cpu-onnxruntime", "cpu-onnxruntime-int8"])
def test_every_probeable_layer_is_timed_once_and_cached_beside_the_peak(backend, tmp_path):
    model, costs = _costs()
    times = cached_layer_ms(tmp_path, backend, model, costs, THREADS)
    assert set(times) == {"stem", "depthwise", "squeeze", "fc"}
    assert all(ms >= 0 for ms in times.values()) and sum(times.values()) > 0
    base = peak_cache_path(tmp_path, "cpu", THREADS)
    path = base.with_name(f"{base.stem}-layers-{backend}.json")
    cache = json.loads(path.read_text())
    assert len(cache) == 4
    # a second profile reads the cache: a planted value comes back, nothing is probed
    planted = {key: 0.125 for key in cache}
    path.write_text(json.dumps(planted))
    assert set(cached_layer_ms(tmp_path, backend, model, costs, THREADS).values()) == {0.125}
    # --refresh-peak forgets them with the peak
    assert path in forget_cached_probes(tmp_path, "cpu", THREADS)


def test_a_corrupt_cache_is_probed_again(tmp_path, monkeypatch):
    model, costs = _costs()
    base = peak_cache_path(tmp_path, "cpu", THREADS)
    path = base.with_name(f"{base.stem}-layers-cpu-eager.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{not json")
    probed = []

    def probe(backend, module, cost, *_):
        probed.append(cost.name)
        return 0.5

    monkeypatch.setattr(layer_probes, "probe_layer_ms", probe)
    times = cached_layer_ms(tmp_path, "cpu-eager", model, costs, THREADS)
    assert times == {name: 0.5 for name in probed} and len(probed) == 4
    assert set(json.loads(path.read_text()).values()) == {0.5}


def test_the_model_takes_a_layers_time_alone_over_its_curve_but_never_below_its_floor():
    _, costs = _costs()
    peak = _peak()
    curve = [[1.0, 0.001], [1e9, 1.0]]
    curves = {kind: curve for kind in ("conv", "pointwise", "depthwise", "matmul")}
    op_costs = OpCosts("cpu-onnxruntime", 0.001, 0.001, 0.001, 0.01, 0.002, curves=curves)
    curve_only = expected_ms(costs, peak, op_costs)
    alone = {"stem": 0.5, "squeeze": 0.0}  # squeeze: "alone" below its floor counts its floor
    squeeze = next(cost for cost in costs if cost.name == "squeeze")
    stem = next(cost for cost in costs if cost.name == "stem")
    with_alone = expected_ms(costs, peak, op_costs, alone_ms=alone)
    assert with_alone == pytest.approx(
        curve_only
        - max(stem.bound_ms(peak), op_costs.per_op_ms(stem))
        + 0.5
        - max(squeeze.bound_ms(peak), op_costs.per_op_ms(squeeze))
        + squeeze.bound_ms(peak)
    )
    figures = floor_figures(costs, peak, 1.0, {}, op_costs, other_ops=2, alone_ms=alone)
    assert figures["overhead_model"]["layers_alone"] == 2
    assert figures["expected_ms"] == pytest.approx(with_alone + 2 * 0.002)


def test_the_operators_without_weights_are_counted_per_backend(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 4 * 4, 10),
    ).eval()  # fmt: skip
    sample = torch.randn(1, 3, 8, 8)
    # eager: every leaf module call that is not a convolution or linear layer
    assert count_other_ops("cpu-eager", model, None, sample, THREADS) == 4
    path = tmp_path / "model.onnx"
    assert export_onnx(model, path, input_shape=(1, 3, 8, 8)).ok
    # ONNX Runtime fuses the activations into the convolutions; the max pool stays a node
    assert count_other_ops("cpu-onnxruntime", model, path, sample, THREADS) >= 1
