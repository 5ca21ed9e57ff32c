"""Deployment figures: int8 quantization, the per-layer roofline bound, cold start and memory.

Real components throughout: a small CNN trained here on the embedded digits set, a real ONNX
export, real ``quantize_static``, real onnxruntime sessions and profiles, real subprocesses.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from archbench.cli import main
from archbench.data import DataConfig, load_data, normalize
from archbench.errors import ArchbenchError
from archbench.measure.coldstart import ColdStartSpec, measure_cold_start
from archbench.measure.export import export_onnx
from archbench.measure.layerwise import (
    eager_layer_times,
    layer_costs,
    layerwise_bound_ms,
    layerwise_roofline,
    onnxruntime_layer_times,
)
from archbench.measure.memory import find_largest_batch
from archbench.measure.numerics import compare_to_fp32
from archbench.measure.onnxrt import create_session
from archbench.measure.quantize import QuantizeConfig, calibration_subset, quantize_int8
from archbench.measure.roofline import MachinePeak, roofline
from architectures import create_arch

INT8_AGREEMENT_FLOOR = 0.95  # top-1 agreement of int8 with fp32 on the 359 digits test images
INT8_ACCURACY_DROP_POINTS = 2.0


class DigitsNet(nn.Module):
    """Small, SqueezeNet-DSC-flavoured: a dense 3x3, a depthwise 3x3 and a 1x1, then linear."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU()
        )
        self.depthwise = nn.Sequential(nn.Conv2d(32, 32, 3, padding=1, groups=32), nn.ReLU())
        self.pointwise = nn.Sequential(nn.Conv2d(32, 128, 1), nn.BatchNorm2d(128), nn.ReLU())
        self.classifier = nn.Linear(128 * 2 * 2, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(self.depthwise(self.stem(x)), 2)
        x = self.pointwise(x)
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(x, 2), 1))


@pytest.fixture(scope="module")
def digits():
    data = load_data(DataConfig("digits", download=False))
    train = normalize(data.train.images, data.mean, data.std)
    test = normalize(data.test.images, data.mean, data.std)
    return train, data.train.labels, test, data.test.labels


@pytest.fixture(scope="module")
def trained(digits, tmp_path_factory):
    """DigitsNet after 100 Adam steps on the digits training split, and its ONNX export."""
    train, train_labels, _, _ = digits
    torch.manual_seed(0)
    model = DigitsNet()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    generator = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(100):
        index = torch.randint(0, train.shape[0], (64,), generator=generator)
        optimizer.zero_grad()
        F.cross_entropy(model(train[index]), train_labels[index]).backward()
        optimizer.step()
    model.eval()
    exported = export_onnx(model, tmp_path_factory.mktemp("digits") / "model.onnx")
    assert exported.ok, exported.error
    return model, exported.path


def _logits(onnx_path: Path, images: torch.Tensor) -> torch.Tensor:
    session = create_session(onnx_path, threads=1).session
    return torch.from_numpy(session.run(None, {"input": images.numpy()})[0])


# ------------------------------------------------------------------------------ int8


def test_int8_model_agrees_with_fp32_on_real_test_images(digits, trained, tmp_path):
    train, _, test, test_labels = digits
    _, fp32_path = trained
    calibration = calibration_subset(train, 128)
    result = quantize_int8(fp32_path, tmp_path / "model.int8.onnx", calibration)
    assert result.ok, result.error
    assert result.calibration_images == 128 and result.method["format"] == "QDQ"
    assert result.size_bytes == os.path.getsize(tmp_path / "model.int8.onnx")
    assert result.size_bytes < os.path.getsize(fp32_path)

    fp32, int8 = _logits(fp32_path, test), _logits(result.path, test)
    figures = compare_to_fp32(
        int8,
        fp32,
        test_labels,
        size_bytes=result.size_bytes,
        fp32_size_bytes=os.path.getsize(fp32_path),
    )
    fp32_top1 = (fp32.argmax(1) == test_labels).float().mean().item()
    assert figures["fp32_top1"] == fp32_top1 > 0.8, "the fixture network should know digits"
    assert figures["top1"] == (int8.argmax(1) == test_labels).float().mean().item()
    assert figures["top1_agreement"] >= INT8_AGREEMENT_FLOOR
    assert abs(figures["top1_delta_points"]) <= INT8_ACCURACY_DROP_POINTS
    assert figures["n"] == 359 and 0 < figures["size_ratio"] < 1


def test_zero_calibration_images_is_one_clear_error(digits, trained, tmp_path):
    train, _, _, _ = digits
    _, fp32_path = trained
    with pytest.raises(ArchbenchError, match="calibration-samples must be positive"):
        calibration_subset(train, 0)
    empty = train[:0]
    with pytest.raises(ArchbenchError, match="at least one training image"):
        calibration_subset(empty, 256)
    with pytest.raises(ArchbenchError, match="at least one training image"):
        quantize_int8(fp32_path, tmp_path / "int8.onnx", empty, config=QuantizeConfig())
    assert list(tmp_path.iterdir()) == []  # nothing half-written


# ------------------------------------------------------------------------------ layer-wise bound


class TwoLayers(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 8 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.conv(x), 1))


def _peak(gflops: float, gbps: float) -> MachinePeak:
    return MachinePeak(gflops, gbps, "cpu", 1, 0, 0, "2026-01-01T00:00:00+00:00")


def test_layerwise_bound_equals_a_hand_computation():
    peak = _peak(gflops=1.0, gbps=1.0)  # 1 FLOP per ns, 1 byte per ns: times in ms = count/1e6
    costs = layer_costs(TwoLayers(), (1, 3, 8, 8))
    assert [cost.name for cost in costs] == ["conv", "fc"]
    # conv: 8x8x8 outputs x 27 MACs; weights 216 + bias 8; input 192, output 512 floats.
    conv_flops, conv_bytes = 2 * 8 * 8 * 8 * 27, (216 + 8 + 192 + 512) * 4
    # fc: 512 x 10 MACs; weights 5120 + bias 10; input 512, output 10 floats.
    fc_flops, fc_bytes = 2 * 512 * 10, (5120 + 10 + 512 + 10) * 4
    assert (costs[0].flops, costs[0].bytes_moved) == (conv_flops, conv_bytes)
    assert (costs[1].flops, costs[1].bytes_moved) == (fc_flops, fc_bytes)
    expected_ms = (max(conv_flops, conv_bytes) + max(fc_flops, fc_bytes)) / 1e6
    assert layerwise_bound_ms(costs, peak) == pytest.approx(expected_ms)
    assert costs[0].compute_ms(peak) > costs[0].memory_ms(peak)  # the conv is compute-bound
    assert costs[1].memory_ms(peak) > costs[1].compute_ms(peak)  # the classifier memory-bound


@pytest.mark.parametrize("name", ["squeezenet_dsc", "mobilenet"])
def test_layerwise_bound_is_never_below_the_aggregate_compute_bound(name):
    from archbench.measure.complexity import count_macs

    model = create_arch(name, num_classes=10)
    macs = count_macs(model)
    costs = layer_costs(model, total_macs=macs)
    assert sum(cost.flops for cost in costs) == 2 * macs  # every multiply-add counted once
    for peak in (_peak(100.0, 50.0), _peak(1000.0, 5.0), _peak(10.0, 500.0)):
        aggregate = roofline(macs, 1.0, peak, bytes_moved=1)
        assert layerwise_bound_ms(costs, peak) >= aggregate["compute_bound_ms"]


def test_measured_layer_times_name_the_layers_furthest_from_their_bound(digits, trained, tmp_path):
    train, _, test, _ = digits
    model, fp32_path = trained
    costs = layer_costs(model)
    weighted = {cost.name for cost in costs if cost.output_shape is not None}
    assert weighted == {"stem.0", "depthwise.0", "pointwise.0", "classifier"}
    int8 = quantize_int8(fp32_path, tmp_path / "int8.onnx", calibration_subset(train, 32))
    peak = _peak(100.0, 20.0)
    for times in (
        eager_layer_times(model, test[:1], costs, passes=5, warmup=1),
        onnxruntime_layer_times(fp32_path, test[:1], costs, threads=1, passes=5, warmup=1),
        onnxruntime_layer_times(int8.path, test[:1], costs, threads=1, passes=5, warmup=1),
    ):
        assert set(times) == weighted and all(ms > 0 for ms in times.values())
        reading = layerwise_roofline(costs, peak, p50_ms=0.5, measured_ms=times)
        furthest = reading["layers_furthest_from_bound"]
        assert len(furthest) == 4 and {row["name"] for row in furthest} == weighted
        assert [row["ratio"] for row in furthest] == sorted(
            (row["ratio"] for row in furthest), reverse=True
        )
        assert reading["layerwise_ratio"] == pytest.approx(0.5 / reading["layerwise_bound_ms"])


# ------------------------------------------------------------------------------ cold start


@pytest.mark.parametrize("backend", ["cpu-onnxruntime", "cpu-eager"])
def test_cold_start_and_inference_memory_come_from_a_fresh_subprocess(backend, digits, tmp_path):
    _, _, test, _ = digits
    torch.manual_seed(0)
    model = create_arch("squeezenet_dsc", num_classes=10).eval()
    torch.save(model.state_dict(), tmp_path / "state_dict.pt")
    assert export_onnx(model, tmp_path / "model.onnx").ok
    spec = ColdStartSpec(
        backend=backend,
        arch="squeezenet_dsc",
        num_classes=10,
        threads=1,
        state_dict=str(tmp_path / "state_dict.pt"),
        onnx=str(tmp_path / "model.onnx"),
        steady_passes=3,
    )
    figures = measure_cold_start(spec, test[:1])
    assert figures["subprocess_pid"] != os.getpid()
    for stage in ("import_ms", "load_ms", "session_ms", "first_inference_ms", "steady_ms"):
        assert figures[stage] > 0, stage
    assert figures["peak_rss_bytes"] > figures["baseline_rss_bytes"] > 0
    assert figures["inference_memory_bytes"] > 0


# ------------------------------------------------------------------------------ training memory


def test_batch_search_finds_the_exact_largest_batch_within_bounded_probes():
    def linear_memory(batch: int) -> int:  # 300 MiB fixed + 5 MiB per image
        return (300 + 5 * batch) * 2**20

    search = find_largest_batch(linear_memory, 1000 * 2**20, max_batch=4096, max_probes=24)
    assert search.largest == 140 and search.exact  # 300 + 5 x 140 = 1000 MiB
    assert len(search.probes) <= 12
    capped = find_largest_batch(linear_memory, 1000 * 2**20, max_batch=64)
    assert capped.largest == 64 and capped.exact
    with pytest.raises(ArchbenchError, match="even batch 1"):
        find_largest_batch(linear_memory, 100 * 2**20)

    def out_of_memory_above_37(batch: int) -> int | None:  # CUDA's backoff: None = OOM
        return batch**2 if batch <= 37 else None

    backed_off = find_largest_batch(out_of_memory_above_37, 2**40)
    assert backed_off.largest == 37 and backed_off.exact
    assert len(backed_off.probes) <= 16


@pytest.mark.slow
def test_archbench_memory_finds_the_largest_batch_and_fails_cleanly(tmp_path, capsys):
    """Real training steps in real subprocesses: the search stops at --max-batch 2."""
    out = tmp_path / "fits"
    argv = ["memory", "--arch", "squeezenet_dsc", "--threads", "1", "--quiet", "--out", str(out)]
    assert main([*argv, "--budget", "8GiB", "--max-batch", "2"]) == 0
    assert "largest training batch within 8.00 GiB on cpu: 2" in capsys.readouterr().out
    result = json.loads((out / "memory.json").read_text())
    assert result["largest_batch"] == 2 and result["exact"] and result["device"] == "cpu"
    assert [probe["batch"] for probe in result["probes"]] == [1, 2]
    assert all(probe["bytes"] > 0 and probe["fits"] for probe in result["probes"])
    assert result["baseline_rss_bytes"] > 0

    too_small = tmp_path / "too-small"
    argv[-1] = str(too_small)
    assert main([*argv, "--budget", "1MiB"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("archbench: error: even batch 1 needs") and error.count("\n") == 1
    assert not too_small.exists()  # nothing half-written
