"""The latency regression check bites: a real 50% slowdown fails, a uniformly slower machine not.

Each case runs ``benchmarks/latency_regression.py`` in a subprocess (real pytest-benchmark runs,
temporary baseline storage) on the calibration workload and one network.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DRIVER = REPO / "benchmarks" / "latency_regression.py"
SUBSET = "calibration or (squeezenet_dsc and eager)"


def check(command: str, storage: Path, *flags: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(DRIVER), command, "--storage", str(storage), "--select", SUBSET,
         "--rounds", "40", "--warmup", "5", *flags],
        env=os.environ | env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


@pytest.fixture(scope="module")
def storage(tmp_path_factory) -> Path:
    storage = tmp_path_factory.mktemp("baselines")
    saved = check("save", storage)
    assert saved.returncode == 0, saved.stdout + saved.stderr
    assert list(storage.rglob("*.json")), "no baseline was written"
    return storage


def test_same_code_passes(storage):
    result = check("compare", storage)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "within 30% of the baseline (normalized)" in result.stdout


def test_a_network_slowed_by_half_fails(storage):
    result = check("compare", storage, ARCHBENCH_BENCH_SLOWDOWN="squeezenet_dsc:0.5")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAIL" in result.stdout and "squeezenet_dsc-cpu-eager" in result.stdout


def test_a_uniformly_slower_machine_passes_when_normalized(storage):
    result = check("compare", storage, ARCHBENCH_BENCH_UNIFORM_SLOWDOWN="0.5")
    assert result.returncode == 0, result.stdout + result.stderr
    # Without normalization the same measurements are a regression: the calibration matters.
    raw = check("compare", storage, "--raw", ARCHBENCH_BENCH_UNIFORM_SLOWDOWN="0.5")
    assert raw.returncode == 1, raw.stdout + raw.stderr


def test_no_baseline_is_a_clear_error(tmp_path):
    result = check("compare", tmp_path / "empty")
    assert result.returncode == 2 and "no baseline for machine" in result.stderr
