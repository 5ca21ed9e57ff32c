"""benchmarks/gpu_check.sh without a GPU: its plan, its refusals, and its CPU pipeline for real."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = REPO_ROOT / "benchmarks" / "gpu_check.sh"


def fake_nvidia_smi(folder: Path, body: str) -> dict[str, str]:
    """An environment whose ``nvidia-smi`` is a script running ``body``."""
    folder.mkdir(parents=True, exist_ok=True)
    tool = folder / "nvidia-smi"
    tool.write_text(f"#!/bin/sh\n{body}\n")
    tool.chmod(0o755)
    return {**os.environ, "PATH": f"{folder}{os.pathsep}{os.environ['PATH']}"}


def gpu_check(*args: str, env: dict | None = None, timeout: int = 60):
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        capture_output=True,
        text=True,
        env=env or os.environ,
        timeout=timeout,
    )


def test_dry_run_plans_the_gpu_check_and_runs_nothing(tmp_path):
    env = fake_nvidia_smi(tmp_path / "bin", 'echo "NVIDIA H100 80GB HBM3"')
    work = tmp_path / "work"
    done = gpu_check("--dry-run", "--work", str(work), env=env)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "reports/gpu-NVIDIA-H100-80GB-HBM3.md" in out
    assert r"pip install --quiet -e .\[gpu\,test\]" in out  # never the CPU onnxruntime
    assert "-m pytest -q -m cuda tests" in out
    assert "--set device=cuda --backends all --samples 1000" in out
    assert 'arch = "squeezenet_dsc"\nset = { max_epochs = 3 }' in out
    assert out.count("[[runs]]") == 5
    assert not work.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "no NVIDIA GPU found"),
        (("--epochs", "0"), "--epochs takes a positive integer"),
        (("--device", "tpu"), "--device takes cuda or cpu"),
        (("--frobnicate",), "unknown option --frobnicate"),
        (("--samples",), "--samples needs a value"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, message):
    env = fake_nvidia_smi(tmp_path / "bin", "exit 9")  # a machine without a usable GPU
    done = gpu_check("--work", str(tmp_path / "work"), *args, env=env)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and message in done.stderr
    assert not (tmp_path / "work").exists()


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_script_is_shellcheck_clean():
    done = subprocess.run(["shellcheck", str(SCRIPT)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout


@pytest.mark.slow
def test_cpu_pipeline_trains_profiles_and_reports(tmp_path):
    """Every step but the install and CUDA, for real: suite, profiles, report."""
    report = tmp_path / "cpu.md"
    env = {**os.environ, "PYTHON": sys.executable}
    done = gpu_check(
        "--no-install", "--device", "cpu", "--data", "digits", "--archs", "squeezenet_dsc",
        "--epochs", "1", "--samples", "8", "--no-cold-start", "--work", str(tmp_path / "work"),
        "--report", str(report), env=env, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    text = report.read_text()
    assert "squeezenet_dsc" in text and "cpu-onnxruntime" in text
    assert "squeezenet_dsc 1 epochs" in text  # the note says how it was made
