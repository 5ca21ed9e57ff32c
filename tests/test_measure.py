"""The measurement core: latency statistics and backends, ONNX export and parity, roofline, the
profile assembler. Real conv nets, real CIFAR-10 images, real ONNX files and onnxruntime sessions.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from PIL import Image
from rich.console import Console
from torch import nn

from archbench.errors import ArchbenchError
from archbench.evaluate.classification import (
    accuracy_report,
    classification_metrics,
    confusion_matrix,
)
from archbench.measure import backends as backends_module
from archbench.measure import roofline as roofline_module
from archbench.measure.backends import BACKENDS, parse_backends
from archbench.measure.complexity import count_macs, count_parameters
from archbench.measure.export import OPSET, check_parity, export_onnx
from archbench.measure.latency import (
    THROUGHPUT_REPEATS,
    THROUGHPUT_WARMUP,
    LatencyStats,
    measure_latency,
)
from archbench.measure.roofline import (
    MachinePeak,
    cached_peak,
    measure_peak,
    min_bytes_moved,
    roofline,
)
from archbench.measure.sysinfo import describe_system, machine_id
from archbench.profile import ProfileConfig, print_summary, profile_model
from architectures import arch_info, create_arch, list_archs

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2023, 0.1994, 0.2010)
PER_CLASS = 8  # real test images per class -> 80 images


# ------------------------------------------------------------------------------ fixtures


class MiniFire(nn.Module):
    """A SqueezeNet-DSC-like Fire: 1x1 squeeze, then 1x1 and depthwise-separable 3x3 expands."""

    def __init__(self, in_chs: int, squeeze: int, expand: int):
        super().__init__()
        self.squeeze = nn.Sequential(
            nn.Conv2d(in_chs, squeeze, 1), nn.BatchNorm2d(squeeze), nn.ReLU()
        )
        self.expand1x1 = nn.Sequential(
            nn.Conv2d(squeeze, expand, 1), nn.BatchNorm2d(expand), nn.ReLU()
        )
        self.expand3x3 = nn.Sequential(
            nn.Conv2d(squeeze, squeeze, 3, padding=1, groups=squeeze, bias=False),
            nn.ReLU(),
            nn.Conv2d(squeeze, expand, 1, bias=False),
            nn.BatchNorm2d(expand),
            nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.squeeze(x)
        return torch.cat([self.expand1x1(x), self.expand3x3(x)], dim=1)


class MiniSqueezeNet(nn.Module):
    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 24, 3, padding=1),
            nn.BatchNorm2d(24),
            nn.ReLU(),
            nn.MaxPool2d(2, 2, ceil_mode=True),
            MiniFire(24, 8, 16),
            MiniFire(32, 8, 16),
            nn.MaxPool2d(2, 2, ceil_mode=True),
            MiniFire(32, 16, 32),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


class Unexportable(nn.Module):
    """Runs in eager mode, but aten::cummax has no ONNX opset-17 export."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.cummax(self.conv(x), dim=1).values
        return self.fc(x.mean(dim=(2, 3)))


def calibrate(model: nn.Module, images: torch.Tensor) -> nn.Module:
    """Give BatchNorm real running statistics, so eval-mode outputs depend on the input (at
    initialisation they barely do, and a parity check would compare near-constants)."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # cumulative average over the calibration batch
    model.train()
    with torch.no_grad():
        model(images)
    return model.eval()


@pytest.fixture(scope="module")
def cifar(cifar10_mini: Path) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """80 real CIFAR-10 test images (8 per class), normalized, with labels and class names."""
    classes = sorted(p.name for p in (cifar10_mini / "test").iterdir() if p.is_dir())
    images, labels = [], []
    for index, name in enumerate(classes):
        for path in sorted((cifar10_mini / "test" / name).glob("*.jpg"))[:PER_CLASS]:
            with Image.open(path) as image:
                images.append(np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0)
            labels.append(index)
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2)
    mean = torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR_STD).view(1, 3, 1, 1)
    return ((x - mean) / std).contiguous(), torch.tensor(labels), classes


@pytest.fixture(scope="module")
def mini_net(cifar) -> nn.Module:
    torch.manual_seed(0)
    return calibrate(MiniSqueezeNet(10), cifar[0])


@pytest.fixture(scope="module")
def mini_onnx(mini_net, tmp_path_factory) -> Path:
    result = export_onnx(mini_net, tmp_path_factory.mktemp("onnx") / "mini.onnx")
    assert result.ok, result.error
    return result.path


def small_peak(device="cpu", threads=None, **_):
    """The real probe, shrunk so a test spends well under a second on it."""
    return measure_peak(
        device, threads, matmul_n=256, copy_bytes=8 * 2**20, conv_shape=(1, 64, 16, 16), repeats=2
    )


# ------------------------------------------------------------------------------ statistics


def test_latency_stats_known_values():
    samples_ns = [3_000_000, 1_000_000, 10_000_000, 2_000_000, 4_000_000]  # 1,2,3,4,10 ms
    stats = LatencyStats.from_samples_ns(samples_ns)
    assert stats.n == 5
    assert stats.mean_ms == pytest.approx(4.0)
    assert stats.std_ms == pytest.approx((50 / 4) ** 0.5)  # squared deviations 9+4+1+0+36
    assert stats.min_ms == pytest.approx(1.0)
    assert stats.p50_ms == pytest.approx(3.0)
    assert stats.p90_ms == pytest.approx(7.6)  # rank 3.6: 4 + 0.6 * (10 - 4)
    assert stats.p99_ms == pytest.approx(9.76)  # rank 3.96: 4 + 0.96 * 6
    ms = np.array(samples_ns) / 1e6
    assert [stats.p50_ms, stats.p90_ms, stats.p99_ms] == pytest.approx(
        list(np.percentile(ms, [50, 90, 99]))
    )
    assert stats.std_ms == pytest.approx(float(np.std(ms, ddof=1)))
    assert stats.to_dict()["p90_ms"] == pytest.approx(7.6)
    assert LatencyStats.from_samples_ns([2_500_000]).std_ms == 0.0
    with pytest.raises(ValueError):
        LatencyStats.from_samples_ns([])


def test_parse_backends():
    cpu = ("cpu-eager", "cpu-onnxruntime", "cpu-onnxruntime-int8", "cpu-eager-bf16")
    assert parse_backends("all") == BACKENDS
    assert parse_backends("cpu") == cpu
    assert parse_backends(" cuda-naive, cpu-eager ") == ("cuda-naive", "cpu-eager")
    assert parse_backends("cpu-eager,cpu,cpu-eager") == cpu
    assert parse_backends(("cuda-eager",)) == ("cuda-eager",)
    with pytest.raises(ArchbenchError, match="did you mean 'cpu-eager'"):
        parse_backends("cpu-eagr")
    with pytest.raises(ArchbenchError, match="did you mean 'cuda-onnxruntime'"):
        parse_backends("cpu-eager,cuda-onnxrt")
    with pytest.raises(ArchbenchError, match="no backend"):
        parse_backends(" , ")


# ------------------------------------------------------------------------------ latency


class VirtualClock:
    """A ``perf_counter_ns`` that moves only when told: timings without a wall clock."""

    def __init__(self) -> None:
        self.now_ns = 0

    def perf_counter_ns(self) -> int:
        return self.now_ns


class Recorder(nn.Module):
    """Wraps a model; records each call's batch size; each call advances ``clock`` by 1 ms,
    the first ``slow`` calls by 150 ms."""

    def __init__(self, inner: nn.Module, clock: VirtualClock, slow: int = 0):
        super().__init__()
        self.inner = inner
        self.clock = clock
        self.slow = slow
        self.batches: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.batches.append(x.shape[0])
        self.clock.now_ns += 150_000_000 if len(self.batches) <= self.slow else 1_000_000
        return self.inner(x)


def test_warmup_passes_are_excluded(mini_net, cifar, monkeypatch):
    # The timers read a virtual clock that only the model's calls advance, so the figures are
    # exact whatever the machine's load: no wall-clock bound in a unit test.
    clock = VirtualClock()
    monkeypatch.setattr(backends_module, "time", clock)
    samples = cifar[0][:12]
    recorder = Recorder(mini_net, clock, slow=4)
    result = measure_latency(
        "cpu-eager", model=recorder, onnx_path=None, samples=samples, warmup=4, threads=1,
        batch_sizes=(1, 4),
    )  # fmt: skip
    assert result.status == "ok", result.reason
    assert result.batch1.n == 12
    assert recorder.batches.count(1) == 4 + 12  # warm-up + one timed pass per sample
    batch4 = recorder.batches.count(4)
    assert batch4 >= THROUGHPUT_WARMUP + THROUGHPUT_REPEATS
    assert set(recorder.batches) == {1, 4}
    # Had any 150 ms warm-up call been timed, the maximum would show it; every timed pass is
    # exactly the 1 ms its call advanced the clock.
    assert result.batch1.p99_ms == pytest.approx(1.0) and result.batch1.min_ms == pytest.approx(1.0)
    assert result.throughput[4] == pytest.approx(4 * 1000 / 1.0)  # 4 images per virtual ms
    assert set(result.throughput) == {1, 4}
    assert result.throughput[1] == pytest.approx(1000 / result.batch1.mean_ms)
    assert result.threads == 1
    assert "perf_counter_ns" in result.method


def test_measure_latency_restores_threads_and_mode(mini_net, cifar):
    before = torch.get_num_threads()
    mini_net.train()
    try:
        result = measure_latency(
            "cpu-eager", model=mini_net, onnx_path=None, samples=cifar[0][:5], warmup=1,
            threads=1, batch_sizes=(1,),
        )  # fmt: skip
        assert result.status == "ok"
        assert mini_net.training  # the caller's flag is restored
    finally:
        mini_net.eval()
    assert torch.get_num_threads() == before


def test_cpu_onnxruntime_backend(mini_onnx, cifar):
    result = measure_latency(
        "cpu-onnxruntime", model=None, onnx_path=mini_onnx, samples=cifar[0][:10], warmup=2,
        threads=1, batch_sizes=(1, 8),
    )  # fmt: skip
    assert result.status == "ok", result.reason
    assert result.batch1.n == 10 and result.batch1.min_ms > 0
    assert set(result.throughput) == {1, 8} and result.throughput[8] > 0
    assert "CPUExecutionProvider" in result.method
    json.dumps(result.to_dict(), allow_nan=False)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA path")
@pytest.mark.parametrize("backend", ["cuda-eager", "cuda-naive", "cuda-onnxruntime"])
def test_cuda_backends_skip_without_cuda(backend, mini_net, mini_onnx, cifar):
    result = measure_latency(
        backend, model=mini_net, onnx_path=mini_onnx, samples=cifar[0][:3], threads=1
    )
    assert result.status == "skipped"
    assert result.reason and "CUDA" in result.reason
    assert result.batch1 is None and result.throughput == {}
    assert result.method  # how it would have been timed, even when skipped
    if backend == "cuda-naive":
        assert "NO synchronization" in result.method
    else:
        assert "synchroniz" in result.method


def test_missing_onnx_file_is_skipped(cifar, tmp_path):
    for path in (None, tmp_path / "absent.onnx"):
        result = measure_latency(
            "cpu-onnxruntime", model=None, onnx_path=path, samples=cifar[0][:2], threads=1
        )
        assert result.status == "skipped" and result.reason


def test_runtime_failure_is_an_error_result(cifar):
    class Broken(nn.Module):
        def forward(self, x):
            raise RuntimeError("kernel exploded\nlong details")

    before = torch.get_num_threads()
    result = measure_latency(
        "cpu-eager", model=Broken(), onnx_path=None, samples=cifar[0][:2], threads=1
    )
    assert result.status == "error"
    assert result.reason == "RuntimeError: kernel exploded"
    assert result.batch1 is None
    assert torch.get_num_threads() == before


# ------------------------------------------------------------------------------ export, parity


def test_export_and_parity_on_real_images(mini_net, mini_onnx, cifar):
    assert mini_onnx.stat().st_size > 0
    exported = onnx.load(str(mini_onnx))
    assert {o.domain: o.version for o in exported.opset_import}[""] == OPSET
    batch_dim = exported.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param  # dynamic batch axis
    assert not list(mini_onnx.parent.glob(".*.tmp"))  # the temporary file was moved into place

    parity = check_parity(mini_net, mini_onnx, cifar[0])  # 80 images, batched
    assert parity.ok, parity.reason
    assert parity.n == 80
    assert parity.max_abs_diff <= 1e-4
    assert parity.top1_agreement == 1.0
    assert parity.reason is None


def test_parity_catches_a_corrupted_initializer(mini_net, mini_onnx, cifar, tmp_path):
    model = onnx.load(str(mini_onnx))
    # The classifier weight: the only 2-D initializer.
    weight = next(init for init in model.graph.initializer if len(init.dims) == 2)
    values = numpy_helper.to_array(weight).copy()
    values[0] += 0.5  # class 0 gets a strong bias toward its features
    weight.CopyFrom(numpy_helper.from_array(values, weight.name))
    broken = tmp_path / "broken.onnx"
    onnx.save(model, str(broken))

    parity = check_parity(mini_net, broken, cifar[0])
    assert not parity.ok
    assert parity.max_abs_diff > 1e-4
    assert "max |torch - onnxruntime|" in parity.reason


def test_parity_catches_weights_changed_after_export(cifar, tmp_path):
    torch.manual_seed(1)
    model = calibrate(MiniSqueezeNet(10), cifar[0])
    path = export_onnx(model, tmp_path / "m.onnx").path
    with torch.no_grad():
        model.classifier.weight.copy_(model.classifier.weight.flip(0))  # permute the classes
        model.classifier.bias.copy_(model.classifier.bias.flip(0))
    parity = check_parity(model, path, cifar[0])
    assert not parity.ok
    assert parity.top1_agreement < 1.0
    assert "top-1 differs" in parity.reason


def test_export_failure_is_a_result(tmp_path):
    path = tmp_path / "x.onnx"
    result = export_onnx(Unexportable(), path)
    assert not result.ok
    assert result.size_bytes is None
    assert "cummax" in result.error and "\n" not in result.error
    assert not path.exists() and not list(tmp_path.iterdir())


def test_parity_on_missing_file_is_a_result(mini_net, cifar, tmp_path):
    parity = check_parity(mini_net, tmp_path / "none.onnx", cifar[0][:4])
    assert not parity.ok and "not found" in parity.reason


@pytest.mark.parametrize("name", list_archs())
@pytest.mark.slow
def test_registered_network_exports_with_parity(name, cifar, tmp_path):
    # A broken registry fails collection here: it must never turn into a skipped case.
    from tests.native_inputs import to_input_size

    images = to_input_size(cifar[0], arch_info(name).input_size)
    torch.manual_seed(0)
    model = calibrate(create_arch(name, num_classes=10), images[:32])
    result = export_onnx(model, tmp_path / f"{name}.onnx", input_shape=(1, *images.shape[1:]))
    assert result.ok, result.error
    assert result.size_bytes == os.path.getsize(result.path)
    parity = check_parity(model, result.path, images[:16])
    assert parity.ok, parity.reason
    assert parity.top1_agreement == 1.0


# ------------------------------------------------------------------------------ metrics


def test_classification_metrics_on_a_known_confusion_matrix():
    confusion = np.array([[5, 1, 0], [2, 3, 1], [0, 0, 4]])  # rows: true class
    metrics = classification_metrics(confusion, ["a", "b", "c"])
    assert metrics["n"] == 16
    assert metrics["top1"] == pytest.approx(12 / 16)
    a, b, c = metrics["per_class"]
    assert (a["class"], a["support"], b["support"], c["support"]) == ("a", 6, 6, 4)
    assert a["precision"] == pytest.approx(5 / 7) and a["recall"] == pytest.approx(5 / 6)
    assert a["f1"] == pytest.approx(10 / 13)
    assert b["precision"] == pytest.approx(3 / 4) and b["recall"] == pytest.approx(1 / 2)
    assert b["f1"] == pytest.approx(0.6)
    assert c["precision"] == pytest.approx(4 / 5) and c["recall"] == pytest.approx(1.0)
    assert c["f1"] == pytest.approx(8 / 9)
    assert metrics["macro"]["precision"] == pytest.approx((5 / 7 + 3 / 4 + 4 / 5) / 3)
    assert metrics["macro"]["recall"] == pytest.approx((5 / 6 + 1 / 2 + 1) / 3)
    assert metrics["macro"]["f1"] == pytest.approx((10 / 13 + 0.6 + 8 / 9) / 3)

    # A class never predicted and never present: zeros, not NaN.
    empty = classification_metrics(np.array([[2, 0], [0, 0]]))
    assert empty["per_class"][1] == {
        "class": "1", "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0
    }  # fmt: skip


def test_confusion_matrix_and_top5():
    labels = [0, 0, 1, 2, 2, 2]
    predictions = [0, 1, 1, 2, 0, 2]
    assert confusion_matrix(labels, predictions, 3).tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    with pytest.raises(ValueError):
        confusion_matrix([0, 3], [0, 1], 3)
    logits = torch.tensor([[0.0, 1, 2, 3, 4, 5], [5.0, 4, 3, 2, 1, 0]])
    report, confusion = accuracy_report(logits, torch.tensor([0, 0]))
    assert report["top1"] == 0.5 and report["top5"] == 0.5  # class 0 ranks 6th in row 0
    assert confusion[0, 5] == 1 and confusion[0, 0] == 1
    small, _ = accuracy_report(torch.eye(3), torch.tensor([0, 1, 2]))
    assert small["top5"] is None and small["top1"] == 1.0


# ------------------------------------------------------------------------------ roofline


def test_roofline_arithmetic():
    peak = MachinePeak(
        gflops=100.0, gbps=10.0, device="cpu", threads=2, matmul_n=2048,
        copy_bytes=2**28, measured_at="2020-01-01T00:00:00+00:00",
    )  # fmt: skip
    figures = roofline(macs=50_000_000, p50_ms=2.0, peak=peak, bytes_moved=4_000_000)
    assert figures["achieved_gflops"] == pytest.approx(50.0)  # 1e8 FLOPs in 2 ms
    assert figures["fraction_of_peak"] == pytest.approx(0.5)
    assert figures["compute_bound_ms"] == pytest.approx(1.0)  # 1e8 / 1e11 FLOP/s
    assert figures["memory_bound_ms"] == pytest.approx(0.4)  # 4e6 B / 1e10 B/s
    assert figures["lower_bound_ms"] == pytest.approx(1.0)
    assert figures["bound"] == "compute"
    assert figures["arithmetic_intensity"] == pytest.approx(25.0)
    memory = roofline(macs=1_000, p50_ms=1.0, peak=peak, bytes_moved=40_000_000)
    assert memory["bound"] == "memory" and memory["lower_bound_ms"] == pytest.approx(4.0)


def test_min_bytes_moved():
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    # params 12 + 3 + 3 + 3, running mean/var 6 floats (num_batches_tracked is not read),
    # input 4 floats, output 3 floats.
    assert min_bytes_moved(model, (1, 4), 3) == (21 + 6 + 4 + 3) * 4


def test_cached_peak_measures_once(tmp_path, monkeypatch):
    calls = []

    def fake_measure(device="cpu", threads=None, **_):
        calls.append((device, threads))
        return MachinePeak(123.0, 45.0, device, threads, 64, 1024, "2020-01-01T00:00:00+00:00")

    monkeypatch.setattr(roofline_module, "measure_peak", fake_measure)
    first = cached_peak(tmp_path, "cpu", 2)
    second = cached_peak(tmp_path, "cpu", 2)
    assert calls == [("cpu", 2)]
    assert first == second and second.gflops == 123.0
    (entry,) = tmp_path.iterdir()
    assert machine_id() in entry.name and entry.suffix == ".json"
    assert json.loads(entry.read_text())["gbps"] == 45.0
    cached_peak(tmp_path, "cpu", 1)  # another thread count is another entry
    assert len(calls) == 2
    entry.write_text("{not json")
    assert cached_peak(tmp_path, "cpu", 2).gflops == 123.0  # a corrupt entry is re-measured
    assert len(calls) == 3
    cached_peak(tmp_path, "cpu", 2, refresh=True)
    assert len(calls) == 4
    assert not list(tmp_path.glob(".*.tmp"))


def test_measure_peak_small_real_probe():
    before = torch.get_num_threads()
    peak = small_peak("cpu", 1)
    assert torch.get_num_threads() == before
    assert peak.threads == 1 and peak.gflops > 0 and peak.gbps > 0
    assert set(peak.probes) >= {"torch_matmul", "torch_conv1x1"}
    assert peak.gflops == max(peak.probes.values())
    assert set(peak.bandwidth_probes) >= {"torch_copy", "torch_gemv", "onnxruntime_gemv"}
    assert peak.gbps == max(peak.bandwidth_probes.values())
    assert MachinePeak.from_dict(json.loads(json.dumps(peak.to_dict()))) == peak


# ------------------------------------------------------------------------------ sysinfo


def test_describe_system():
    system = describe_system(threads=3)
    json.dumps(system, allow_nan=False)
    assert system["torch_threads"] == 3
    assert system["cpu_model"] and system["logical_cores"] >= 1
    assert system["versions"]["torch"] and system["versions"]["onnxruntime"]
    assert system["archbench_version"]
    assert system["datetime_utc"].endswith("+00:00")
    if not torch.cuda.is_available():
        assert system["gpu"] is None
    commit = system["git_commit"]
    assert commit is None or len(commit.removesuffix("-dirty")) == 40
    assert machine_id() == machine_id() and len(machine_id()) == 12
    int(machine_id(), 16)


# ------------------------------------------------------------------------------ profile


def hand_confusion(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, k: int):
    with torch.no_grad():
        predictions = model.eval()(images).argmax(dim=1)
    counts = [[0] * k for _ in range(k)]
    for true, predicted in zip(labels.tolist(), predictions.tolist(), strict=True):
        counts[true][predicted] += 1
    return counts


@pytest.mark.slow
def test_profile_model_writes_every_figure(mini_net, cifar, tmp_path, monkeypatch):
    monkeypatch.setattr(roofline_module, "measure_peak", small_peak)
    images, labels, classes = cifar
    samples = images[::2][:40]  # 40 latency samples across all classes
    lines: list[str] = []
    config = ProfileConfig(
        samples=None, warmup=3, threads=1, batch_sizes=(1, 8), parity_samples=20, top_layers=5,
        peak_cache_dir=tmp_path / "peak", cold_start=False,
    )  # fmt: skip
    out = tmp_path / "profile"
    profile = profile_model(
        mini_net, arch="mini", num_classes=10, out_dir=out, samples=samples, labels=labels,
        eval_images=images, class_names=classes, config=config, progress=lines.append,
    )  # fmt: skip

    expected_keys = {
        "arch", "num_classes", "system", "params", "size_bytes", "macs", "accuracy", "onnx",
        "latency", "peak", "roofline", "config", "started_at", "finished_at", "quantization",
        "numerics",
    }  # fmt: skip
    assert expected_keys <= set(profile)
    assert json.loads((out / "profile.json").read_text()) == profile
    assert not list(out.glob(".*.tmp"))
    assert lines and any("cpu-eager" in line for line in lines)

    params = count_parameters(mini_net)
    assert profile["params"] == {"trainable": params.trainable, "total": params.total}
    assert profile["macs"] == count_macs(mini_net, (1, 3, 32, 32))
    assert profile["size_bytes"]["state_dict"] == os.path.getsize(out / "state_dict.pt")
    assert profile["size_bytes"]["onnx"] == os.path.getsize(out / "model.onnx")
    state = torch.load(out / "state_dict.pt", weights_only=True)
    assert set(state) == set(mini_net.state_dict())

    assert profile["onnx"]["ok"] and profile["onnx"]["opset"] == OPSET
    assert profile["onnx"]["parity"]["ok"] and profile["onnx"]["parity"]["n"] == 20

    latency = profile["latency"]
    assert list(latency) == list(BACKENDS)
    for backend in ("cpu-eager", "cpu-onnxruntime"):
        result = latency[backend]
        assert result["status"] == "ok", result["reason"]
        assert result["batch1"]["n"] == 40 and result["threads"] == 1
        assert set(result["throughput"]) == {"1", "8"}
        figures = profile["roofline"][backend]
        assert figures["achieved_gflops"] == pytest.approx(
            2 * profile["macs"] / (result["batch1"]["p50_ms"] * 1e-3) / 1e9
        )
        assert figures["lower_bound_ms"] == max(
            figures["compute_bound_ms"], figures["memory_bound_ms"]
        )
    if not torch.cuda.is_available():
        for backend in ("cuda-eager", "cuda-naive", "cuda-onnxruntime"):
            assert latency[backend]["status"] == "skipped"
            assert latency[backend]["reason"]
            assert latency[backend]["batch1"] is None
            assert backend not in profile["roofline"]
        assert set(profile["peak"]) == {"cpu"}
    assert profile["peak"]["cpu"]["gflops"] > 0

    accuracy = profile["accuracy"]
    counts = hand_confusion(mini_net, images, labels, 10)
    assert accuracy["n"] == 80
    assert accuracy["top1"] == pytest.approx(sum(counts[i][i] for i in range(10)) / 80)
    for i, row in enumerate(accuracy["per_class"]):
        predicted = sum(counts[j][i] for j in range(10))
        assert row["class"] == classes[i]
        assert row["support"] == sum(counts[i]) == PER_CLASS
        assert row["recall"] == pytest.approx(counts[i][i] / PER_CLASS)
        assert row["precision"] == pytest.approx(counts[i][i] / predicted if predicted else 0.0)
    assert accuracy["top5"] is not None and accuracy["top5"] >= accuracy["top1"]
    with open(out / "confusion_matrix.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0][1:] == classes
    assert [[int(v) for v in row[1:]] for row in rows[1:]] == counts

    with open(out / "macs_by_layer.csv", newline="") as handle:
        layers = list(csv.DictReader(handle))
    assert 0 < len(layers) <= 5
    assert int(layers[0]["macs"]) >= int(layers[-1]["macs"])

    assert profile["config"]["resolved"]["threads"] == 1
    assert profile["config"]["batch_sizes"] == [1, 8]

    console = Console(file=io.StringIO(), width=160)
    print_summary(profile, console)
    text = console.file.getvalue()
    assert "cpu-onnxruntime" in text and "mini" in text
    if not torch.cuda.is_available():
        assert "skipped" in text


@pytest.mark.slow
def test_profile_model_records_a_failed_export(cifar, tmp_path):
    torch.manual_seed(0)
    model = Unexportable().eval()
    config = ProfileConfig(
        backends=("cpu-eager", "cpu-onnxruntime"), samples=6, warmup=1, threads=1,
        batch_sizes=(1,), parity_samples=4, peak_cache_dir=tmp_path / "peak",
    )  # fmt: skip
    # A pre-computed peak in the cache: this test is about the export, not the probe.
    peak = MachinePeak(100.0, 10.0, "cpu", 1, 64, 1024, "2020-01-01T00:00:00+00:00")
    path = roofline_module.peak_cache_path(config.peak_cache_dir, "cpu", 1)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(peak.to_dict()))

    out = tmp_path / "profile"
    profile = profile_model(
        model, arch="unexportable", num_classes=10, out_dir=out, samples=cifar[0], config=config
    )
    assert not profile["onnx"]["ok"] and "cummax" in profile["onnx"]["error"]
    assert profile["onnx"]["parity"]["ok"] is False
    assert "ONNX export failed" in profile["onnx"]["parity"]["reason"]
    assert profile["size_bytes"]["onnx"] is None and not (out / "model.onnx").exists()
    assert profile["size_bytes"]["state_dict"] == os.path.getsize(out / "state_dict.pt")
    ort = profile["latency"]["cpu-onnxruntime"]
    assert ort["status"] == "skipped" and ort["reason"].startswith("ONNX export failed: ")
    assert profile["latency"]["cpu-eager"]["status"] == "ok"
    assert profile["latency"]["cpu-eager"]["batch1"]["n"] == 6
    assert profile["roofline"]["cpu-eager"]["fraction_of_peak"] > 0
    assert profile["accuracy"] is None and not (out / "confusion_matrix.csv").exists()
    print_summary(profile, Console(file=io.StringIO()))


def test_profile_model_rejects_mismatched_labels(mini_net, cifar, tmp_path):
    with pytest.raises(ArchbenchError, match="labels"):
        profile_model(
            mini_net, arch="mini", num_classes=10, out_dir=tmp_path, samples=cifar[0][:4],
            labels=cifar[1][:3], config=ProfileConfig(backends=("cpu-eager",)),
        )  # fmt: skip
