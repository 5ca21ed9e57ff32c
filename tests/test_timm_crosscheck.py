"""benchmarks/timm_crosscheck.py: every variant of the cross-check runs and is reported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_cross_check_reports_each_variant_against_archbench(tmp_path) -> None:
    out = tmp_path / "timm.json"
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "timm_crosscheck.py"),
         "--models", "mobilenetv3_small_100", "--input-size", "32", "--samples", "2",
         "--warmup", "1", "--steps", "2", "--repeats", "2", "--threads", "1",
         "--json", str(out)],
        env=os.environ | {"PYTHONPATH": str(REPO)},  # the session's cache: its peak, if probed
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (row,) = json.loads(out.read_text())
    assert row["model"] == "mobilenetv3_small_100"
    variants = {"timm_loop", "timm_loop_inference_mode", "archbench_mean", "archbench_p50"}
    assert set(row["ms"]) == variants and all(ms > 0 for ms in row["ms"].values())
    assert all(len(values) == 2 for values in row["repeats"].values())  # one per repeat
    assert row["over_archbench_mean"]["archbench_mean"] == 1.0
    for key, ratio in row["over_archbench_mean"].items():
        # the same division the script prints, float64 apart at most
        assert abs(ratio - row["ms"][key] / row["ms"]["archbench_mean"]) < 1e-12


def test_a_missing_timm_benchmark_file_is_one_line(tmp_path) -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "timm_crosscheck.py"),
         "--timm-benchmark", str(tmp_path / "nope.py")],
        env=os.environ | {"PYTHONPATH": str(REPO)}, cwd=REPO, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 2 and "no file" in done.stderr.strip().splitlines()[-1]
