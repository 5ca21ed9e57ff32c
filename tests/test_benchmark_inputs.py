"""Benchmark scripts feed every registered network its own input shape (benchmarks/inputs.py).

The helper is checked on every registered network; ``latency_fidelity.py`` (the script that
fed 3x32x32 to the 1x28x28 MLP) runs end to end over every registered network at its smallest
configuration, and ``deployment.py`` on the MLP, the one network of another shape (exporting
and quantizing the large ones would take minutes). ``latency_cases.py`` is run over every
network by ``tests/benchmarks/test_latency_bench.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from archbench.data import DataConfig, load_data
from architectures import arch_info, create_arch, list_archs
from benchmarks import inputs

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def digits_uint8(tmp_path_factory) -> torch.Tensor:
    """Two real digits as uint8 ``(2, 3, 32, 32)``: the images the scripts fit to a network."""
    data = load_data(DataConfig(dataset="digits", data_dir=tmp_path_factory.mktemp("data")))
    return data.test.images[:2]


@pytest.mark.parametrize("arch", list_archs())
def test_every_registered_network_runs_on_its_benchmark_inputs(arch, digits_uint8) -> None:
    shape = tuple(arch_info(arch).input_size)
    noise = inputs.seeded_input(arch, batch=2)
    images = inputs.image_input(arch, digits_uint8)
    assert noise.shape == images.shape == (2, *shape)
    assert torch.equal(noise, inputs.seeded_input(arch, batch=2))  # fixed by the seed
    torch.manual_seed(0)
    model = create_arch(arch, num_classes=10, in_channels=shape[0]).eval()
    with torch.inference_mode():
        for batch in (noise, images):
            logits = model(batch)
            assert logits.shape == (2, 10) and torch.isfinite(logits).all()


def _script(name: str, *args: str) -> subprocess.CompletedProcess:
    # The session's hermetic cache (conftest): one peak probe at this thread count for every
    # script, not one per test (each probe takes seconds and none of these tests is about it).
    env = os.environ | {"PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / name), *args], env=env, cwd=REPO,
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip


@pytest.mark.slow
def test_latency_fidelity_runs_over_every_registered_network(tmp_path) -> None:
    out = tmp_path / "fidelity.json"
    done = _script(
        "latency_fidelity.py", "--samples", "2", "--repeats", "1", "--warmup", "0",
        "--min-run-time", "0.01", "--threads", "1", "--json", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = json.loads(out.read_text())["rows"]
    assert sorted(row["arch"] for row in rows) == sorted(list_archs())
    assert all(row["profiler_p50_ms"] > 0 and row["timer_median_ms"] > 0 for row in rows)


@pytest.mark.slow
def test_latency_fidelity_fits_real_images_to_each_network(tmp_path, cifar10_mini) -> None:
    out = tmp_path / "fidelity.json"
    done = _script(
        "latency_fidelity.py", "--archs", "m*", "--images", str(cifar10_mini / "test"),
        "--samples", "2", "--repeats", "1", "--warmup", "0", "--min-run-time", "0.01",
        "--threads", "1", "--json", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert sorted(row["arch"] for row in json.loads(out.read_text())["rows"]) == [
        "mlp",
        "mobilenet",
    ]


@pytest.mark.slow
def test_deployment_measures_the_mlp_in_its_own_shape(tmp_path) -> None:
    out = tmp_path / "deployment.json"
    done = _script(
        "deployment.py", "--archs", "mlp", "--samples", "3", "--calibration", "8",
        "--json", str(out),  # torch's threads: the session's peak at that count, probed once
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = {row["backend"]: row for row in json.loads(out.read_text())}
    assert {"cpu-eager", "cpu-onnxruntime", "cpu-onnxruntime-int8"} <= set(rows)
    for row in rows.values():
        assert row["arch"] == "mlp" and row["p50_ms"] > 0
        assert 0 < row["floor_ms"] <= row["floor_dram_ms"] and row["expected_ms"] >= row["floor_ms"]
    assert rows["cpu-onnxruntime-int8"]["peak_format"] == "int8"
