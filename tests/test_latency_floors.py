"""Floors that are floors: per-format peaks, cache-level bytes, the overhead model, and the
invariant that no measurement beats its floor."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from torch import nn

from archbench import files
from archbench.data import DataConfig, load_data, normalize
from archbench.measure.caches import (
    FALLBACK_L2_BYTES,
    FALLBACK_LLC_BYTES,
    CacheSizes,
    cache_sizes,
    probe_cache_levels,
)
from archbench.measure.export import export_onnx
from archbench.measure.formats import (
    ELEMENT_BYTES,
    cached_format_peak,
    costs_in_format,
    format_skip_reason,
    peak_format,
)
from archbench.measure.latency import measure_latency
from archbench.measure.layerwise import layer_costs, layerwise_bound_dram_ms, layerwise_bound_ms
from archbench.measure.numerics import bf16_skip_reason
from archbench.measure.overhead import (
    OP_KINDS,
    curve_ms,
    expected_ms,
    op_kind,
    probe_op_costs,
)
from archbench.measure.quantize import calibration_subset, quantize_int8
from archbench.measure.roofline import MachinePeak, peak_cache_path
from archbench.profile.config import ProfileConfig
from archbench.profile.deployment import layer_times
from archbench.profile.model import profile_model
from architectures import create_arch

THREADS = 1  # one thread: small tensors run faster on it, and a busy machine cannot stall it
# p50 below this share of its floor fails: more than timer noise below a bound is a wrong bound.
INVARIANT = 0.95


def _peak(gflops: float, gbps: float, levels=()) -> MachinePeak:
    return MachinePeak(
        gflops, gbps, "cpu", 1, 0, 0, "2026-01-01T00:00:00+00:00", cache_levels=list(levels)
    )


class TwoLayers(nn.Module):
    def __init__(self, in_channels: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 8, 3, padding=1)
        self.depthwise = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.fc = nn.Linear(8 * 8 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.depthwise(self.conv(x)), 1))


# ------------------------------------------------------------------------------ cache levels


def _sysfs(root: Path, entries: list[tuple[int, str, str]]) -> Path:
    for index, (level, kind, size) in enumerate(entries):
        folder = root / f"index{index}"
        folder.mkdir(parents=True)
        (folder / "level").write_text(f"{level}\n")
        (folder / "type").write_text(f"{kind}\n")
        (folder / "size").write_text(f"{size}\n")
    return root


def test_cache_sizes_come_from_sysfs_and_fall_back_when_it_is_missing(tmp_path):
    entries = [(1, "Data", "48K"), (1, "Instruction", "32K"), (2, "Unified", "1024K")]
    root = _sysfs(tmp_path / "cache", [*entries, (3, "Unified", "32M")])
    sizes = cache_sizes(root)
    assert (sizes.l2_bytes, sizes.llc_bytes, sizes.source) == (2**20, 32 * 2**20, "sysfs")
    fallback = cache_sizes(tmp_path / "missing")
    assert (fallback.l2_bytes, fallback.llc_bytes) == (FALLBACK_L2_BYTES, FALLBACK_LLC_BYTES)
    assert fallback.source == "fallback"


def test_levels_are_probed_smallest_first_and_never_slower_than_a_larger_one():
    sizes = CacheSizes(l2_bytes=256 * 2**10, llc_bytes=2 * 2**20, source="test")
    levels = probe_cache_levels(1, 2, sizes, max_bytes=4 * 2**20)
    # half of each cache, and the doubling sizes between and past them, up to max_bytes
    assert [(level["level"], level["bytes"]) for level in levels] == [
        ("L2", 128 * 2**10),
        ("0.25MiB", 256 * 2**10),
        ("0.5MiB", 512 * 2**10),
        ("LLC", 2**20),
        ("2MiB", 2 * 2**20),
        ("4MiB", 4 * 2**20),
    ]
    speeds = [level["gbps"] for level in levels]
    assert speeds == sorted(speeds, reverse=True) and speeds[-1] > 0
    assert all(level["gbps"] >= max(level["probes"].values()) for level in levels)


def test_each_layer_is_charged_at_the_fastest_level_its_working_set_fits():
    costs = layer_costs(TwoLayers(), (1, 3, 8, 8))
    by_name = {cost.name: cost for cost in costs}
    conv, depthwise, fc = (by_name[name] for name in ("conv", "depthwise", "fc"))
    # conv: 216 + 8 weights, 192 in, 512 out floats; depthwise: 72 + 8, 512, 512;
    # fc: 5120 + 10 weights, 512 in, 10 out.
    assert conv.bytes_moved == (216 + 8 + 192 + 512) * 4
    assert depthwise.bytes_moved == (72 + 8 + 512 + 512) * 4
    assert fc.bytes_moved == (5120 + 10 + 512 + 10) * 4
    levels = [  # conv and depthwise fit the L2; fc only the LLC
        {"level": "L2", "bytes": depthwise.bytes_moved, "gbps": 100.0},
        {"level": "LLC", "bytes": 10**6, "gbps": 40.0},
    ]
    peak = _peak(gflops=1e6, gbps=10.0, levels=levels)  # memory-bound everywhere
    assert [cost.level(peak) for cost in (conv, depthwise, fc)] == ["L2", "L2", "LLC"]
    expected = (conv.bytes_moved + depthwise.bytes_moved) / 100e9 + fc.bytes_moved / 40e9
    assert layerwise_bound_ms(costs, peak) == pytest.approx(expected * 1e3)
    dram = sum(cost.bytes_moved for cost in costs) / 10e9
    assert layerwise_bound_dram_ms(costs, peak) == pytest.approx(dram * 1e3)
    # A level that probed slower than DRAM is charged at DRAM: it cannot raise the floor.
    slow = _peak(gflops=1e6, gbps=10.0, levels=[{"level": "L2", "bytes": 10**6, "gbps": 1.0}])
    assert layerwise_bound_ms(costs, slow) == pytest.approx(layerwise_bound_dram_ms(costs, slow))


def test_an_int8_floor_counts_one_byte_per_weight_and_activation():
    fp32 = layer_costs(TwoLayers(), (1, 3, 8, 8))
    size = ELEMENT_BYTES["int8"]
    int8 = layer_costs(TwoLayers(), (1, 3, 8, 8), activation_bytes=size, weight_bytes=size)
    assert [cost.bytes_moved * 4 for cost in int8] == [cost.bytes_moved for cost in fp32]
    assert [cost.flops for cost in int8] == [cost.flops for cost in fp32]
    assert costs_in_format(fp32, "int8") == int8  # rescaled without tracing the model again
    bf16 = costs_in_format(fp32, "bf16")
    assert [cost.bytes_moved * 2 for cost in bf16] == [cost.bytes_moved for cost in fp32]


# ------------------------------------------------------------------------------ format peaks


def test_each_backend_is_judged_against_its_own_format():
    assert peak_format("cpu-eager") == peak_format("cpu-onnxruntime") == "fp32"
    assert peak_format("cpu-onnxruntime-int8") == "int8"
    assert peak_format("cpu-eager-bf16") == "bf16"
    assert peak_format("cuda-eager-fp16") == peak_format("cuda-onnxruntime-fp16") == "fp16"
    assert peak_format("cuda-eager", tf32=True) == "tf32"
    assert peak_format("cuda-eager") == "fp32"
    assert format_skip_reason("int8", "cuda") is not None
    assert format_skip_reason("bf16", "cpu") == bf16_skip_reason()  # detected, not assumed


def _seed_fp32_peak(cache: Path, threads: int) -> MachinePeak:
    """A cache entry for the fp32 peak, so the test probes only the reduced formats."""
    peak = MachinePeak(
        50.0, 20.0, "cpu", threads, 0, 0, "2026-01-01T00:00:00+00:00", cache_levels=[]
    )
    files.write_json(peak_cache_path(cache, "cpu", threads), peak.to_dict())
    return peak


@pytest.mark.parametrize("fmt", ["int8", "bf16"])
def test_a_format_peak_is_probed_once_and_cached_beside_fp32(fmt, tmp_path):
    reason = format_skip_reason(fmt, "cpu")
    if reason is not None:
        with pytest.raises(RuntimeError, match="bf16"):
            cached_format_peak(tmp_path, "cpu", THREADS, fmt)
        pytest.skip(reason)
    fp32 = _seed_fp32_peak(tmp_path, THREADS)
    first = cached_format_peak(tmp_path, "cpu", THREADS, fmt)
    assert first.numeric_format == fmt and first.gflops == max(first.probes.values()) > 0
    assert all(name.startswith(("onnxruntime_int8", "torch_bf16")) for name in first.probes)
    assert first.gbps == fp32.gbps  # a byte is a byte: bandwidths are the fp32 probe's
    second = cached_format_peak(tmp_path, "cpu", THREADS, fmt)
    assert second == first  # read back, not probed again (a probe never repeats a figure)
    assert cached_format_peak(tmp_path, "cpu", THREADS, "fp32").gflops == fp32.gflops


# ------------------------------------------------------------------------------ overhead model


def test_the_overhead_model_is_the_sum_of_each_layers_floor_or_its_cost_on_the_curve():
    costs = layer_costs(TwoLayers(in_channels=1), (1, 1, 8, 8))
    # groups decides depthwise, not a one-channel input
    kinds = {cost.name: op_kind(cost) for cost in costs}
    assert kinds == {"conv": "conv", "depthwise": "depthwise", "fc": "matmul"}
    op_costs = probe_op_costs("cpu-onnxruntime", THREADS, runs=20, chain=4)
    by_kind = {kind: getattr(op_costs, f"{kind}_ms") for kind in OP_KINDS}
    assert min(by_kind.values()) >= 0 and op_costs.call_ms >= 0
    # every kind with weights has a curve from its tiny probe (the fixed cost) upwards
    assert set(op_costs.curves) == {"conv", "pointwise", "depthwise", "matmul"}
    for kind, curve in op_costs.curves.items():
        assert curve[0][1] == by_kind[kind] and len(curve) >= 3
        assert [flops for flops, _ in curve] == sorted(flops for flops, _ in curve)
    peak = _peak(gflops=10.0, gbps=10.0)
    hand = op_costs.call_ms + sum(
        max(cost.bound_ms(peak), curve_ms(op_costs.curves[op_kind(cost)], cost.flops))
        for cost in costs
    )
    assert expected_ms(costs, peak, op_costs) == pytest.approx(hand)
    with_others = expected_ms(costs, peak, op_costs, other_ops=3)
    assert with_others == pytest.approx(hand + 3 * op_costs.other_ms)
    assert expected_ms(costs, peak, op_costs) >= layerwise_bound_ms(costs, peak)


def test_a_layers_cost_is_read_off_its_kinds_curve():
    curve = [[100.0, 0.002], [10_000.0, 0.02], [1_000_000.0, 0.2]]
    assert curve_ms(curve, 10.0) == 0.002  # below the tiny probe: its fixed cost
    assert curve_ms(curve, 10_000.0) == pytest.approx(0.02)  # on a probe: its time
    assert curve_ms(curve, 1_000.0) == pytest.approx(0.002 * 10**0.5)  # log-log between
    assert curve_ms(curve, 4_000_000.0) == pytest.approx(0.8)  # above: the largest one's rate
    pointwise = layer_costs(nn.Sequential(nn.Conv2d(4, 4, 1)), (1, 4, 4, 4))
    assert [op_kind(cost) for cost in pointwise] == ["pointwise"]


# ------------------------------------------------------------------------------ the invariant


@pytest.fixture(scope="module")
def machine(tmp_path_factory):
    """This machine's real peaks (full-size probes: a smaller probe would raise the floor),
    cached once for the module, and the digits images."""
    cache = tmp_path_factory.mktemp("peaks")
    data = load_data(DataConfig("digits", download=False))
    train = normalize(data.train.images, data.mean, data.std)
    test = normalize(data.test.images, data.mean, data.std)
    return cache, train, test


def _backends() -> list[str]:
    backends = ["cpu-eager", "cpu-onnxruntime", "cpu-onnxruntime-int8"]
    return backends + (["cpu-eager-bf16"] if bf16_skip_reason() is None else [])


@pytest.mark.parametrize("arch", ["squeezenet_dsc", "mobilenet"])
@pytest.mark.slow
def test_no_cpu_backend_beats_its_floor(arch, machine, tmp_path):
    cache, train, test = machine
    torch.manual_seed(0)
    model = create_arch(arch, num_classes=10).eval()
    shape = (1, *test.shape[1:])
    fp32_costs = layer_costs(model, shape)
    fp32_path = tmp_path / "fp32.onnx"
    assert export_onnx(model, fp32_path, input_shape=shape).ok
    int8 = quantize_int8(fp32_path, tmp_path / "int8.onnx", calibration_subset(train, 8))
    assert int8.ok, int8.error
    paths = {"cpu-onnxruntime": fp32_path, "cpu-onnxruntime-int8": int8.path}
    beaten = []
    for backend in _backends():
        result = measure_latency(
            backend,
            model=model,
            onnx_path=paths.get(backend),
            samples=test[:8],
            warmup=2,
            threads=THREADS,
            batch_sizes=(1,),
        )
        assert result.ok, result.reason
        fmt = peak_format(backend)
        peak = cached_format_peak(cache, "cpu", THREADS, fmt)
        costs = costs_in_format(fp32_costs, fmt)
        floor = layerwise_bound_ms(costs, peak)
        assert floor <= layerwise_bound_dram_ms(costs, peak)
        if result.batch1.p50_ms < INVARIANT * floor:
            beaten.append(_beaten(backend, model, paths, test[:1], costs, peak, result, floor))
    assert not beaten, "; ".join(beaten)


def _beaten(backend, model, paths, sample, costs, peak, result, floor) -> str:
    """The failure message: the backend, its figures and the layer furthest below its floor."""
    times = layer_times(backend, model, paths, sample, costs, THREADS)
    floors = {cost.name: cost.bound_ms(peak) for cost in costs if cost.bound_ms(peak) > 0}
    ratios = {name: ms / floors[name] for name, ms in times.items() if name in floors}
    worst = min(ratios, key=ratios.get) if ratios else "no layer timed"
    return (
        f"{backend} ({peak.numeric_format}): p50 {result.batch1.p50_ms:.4f} ms < {INVARIANT} x "
        f"floor {floor:.4f} ms; furthest below its own floor: {worst} "
        f"({ratios.get(worst, float('nan')):.2f} x its floor)"
    )


# ------------------------------------------------------------------------------ profile.json


def test_the_profile_records_which_peak_each_floor_used(machine, tmp_path):
    cache, train, test = machine
    torch.manual_seed(0)
    model = TwoLayers()
    config = ProfileConfig(
        backends=("cpu-onnxruntime", "cpu-onnxruntime-int8"),
        samples=5,
        warmup=1,
        batch_sizes=(1,),
        calibration_samples=8,
        cold_start=False,
        threads=THREADS,
        peak_cache_dir=cache,
    )
    images = torch.nn.functional.interpolate(test[:10], size=(8, 8))
    profile = profile_model(
        model,
        arch="two_layers",
        num_classes=10,
        out_dir=tmp_path,
        samples=images,
        calibration=torch.nn.functional.interpolate(train[:8], size=(8, 8)),
        config=config,
    )
    fp32, int8 = (profile["roofline"][b] for b in ("cpu-onnxruntime", "cpu-onnxruntime-int8"))
    assert fp32["peak_format"] == "fp32" and int8["peak_format"] == "int8"
    int8_peak = profile["peak_formats"]["cpu"]["int8"]
    assert int8["peak_gflops"] == int8_peak["gflops"] != profile["peak"]["cpu"]["gflops"]
    for reading in (fp32, int8):
        assert 0 < reading["floor_ms"] <= reading["floor_dram_ms"]
        assert reading["expected_ms"] >= reading["floor_ms"]
        assert reading["overhead_model"]["kind"] == "model, not a bound"
        assert reading["overhead_model"]["other_ops"] >= 0
        above = reading["layers_most_above_floor"]
        assert above and {row["name"] for row in above} <= {"conv", "depthwise", "fc"}
        assert [row["above_floor_ms"] for row in above] == sorted(
            (row["above_floor_ms"] for row in above), reverse=True
        )
    with (tmp_path / "layerwise_roofline.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    bytes_of = {(row["format"], row["layer"]): int(row["bytes"]) for row in rows}
    assert bytes_of[("int8", "fc")] * 4 == bytes_of[("fp32", "fc")]
    assert all(
        row["level"] in ("L2", "LLC", "DRAM") or row["level"].endswith("MiB") for row in rows
    )
