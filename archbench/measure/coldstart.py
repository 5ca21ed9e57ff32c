"""Cold start and inference memory per backend, each measured in a fresh interpreter.

A deployed model is loaded once and then answers; how long until the first answer is a figure
of its own (ONNX Runtime's ``onnxruntime_perf_test`` reports session creation and first
inference apart from the steady state). Measured in the process that already profiled other
backends it would be flattered by warm caches, loaded libraries and a grown heap, so every
backend gets a new interpreter (:mod:`coldstart_child`, run by path) that records:

* ``import_ms``: importing what the backend needs (torch and the architectures; or
  onnxruntime and numpy: an ONNX Runtime deployment does not import torch);
* ``load_ms``: reading the model from disk (``torch.load`` of the state dict; the ONNX file's
  bytes);
* ``session_ms``: making it runnable (building the network and loading the state dict, plus the
  dtype change for bf16/fp16; creating the ``InferenceSession`` with all graph optimizations);
* ``first_inference_ms``: the first batch-1 pass on a real test image;
* ``steady_ms``: the median of the next ``steady_passes`` passes, in the same process;
* ``peak_rss_bytes`` and ``inference_memory_bytes``: the process's peak resident memory, and
  that minus its peak right after the imports (``baseline_rss_bytes``).

The subprocesses get this process's environment with archbench's own root first on
``PYTHONPATH``, so they measure the same archbench (and architectures) as the caller.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

CHILD = Path(__file__).with_name("coldstart_child.py")
PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the directory holding archbench/
STEADY_PASSES = 20
CHILD_TIMEOUT_S = 600
STAGES = ("import_ms", "load_ms", "session_ms", "first_inference_ms", "steady_ms")


@dataclass(frozen=True)
class ColdStartSpec:
    """What a fresh interpreter needs to load and run one backend's model."""

    backend: str
    arch: str
    num_classes: int
    threads: int
    state_dict: str | None = None  # eager backends
    onnx: str | None = None  # ONNX Runtime backends
    steady_passes: int = STEADY_PASSES


def child_environment() -> dict[str, str]:
    """This process's environment with archbench's root first on ``PYTHONPATH``."""
    env = dict(os.environ)
    existing = env.get("PYTHONPATH")
    env["PYTHONPATH"] = os.pathsep.join([str(PACKAGE_ROOT), *([existing] if existing else [])])
    return env


def run_child(payload: dict[str, Any], cwd: Path | None = None) -> dict[str, Any]:
    """Run :data:`CHILD` on ``payload``; its JSON line, or a RuntimeError with its last words."""
    done = subprocess.run(
        [sys.executable, str(CHILD), json.dumps(payload)],
        capture_output=True,
        text=True,
        env=child_environment(),
        cwd=cwd,
        timeout=CHILD_TIMEOUT_S,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"cold-start subprocess exited {done.returncode}: {last}")
    return json.loads(lines[-1])


def measure_cold_start(spec: ColdStartSpec, sample: torch.Tensor) -> dict[str, Any]:
    """Cold-start stages and inference memory of one backend, from a fresh interpreter.

    ``sample`` is one real, normalized image ``(1, C, H, W)``. Returns the stage times in
    milliseconds, ``peak_rss_bytes``, ``baseline_rss_bytes``, ``inference_memory_bytes`` and
    the ``method`` in words; raises ``RuntimeError`` if a subprocess fails.
    """
    with tempfile.TemporaryDirectory(prefix="archbench-coldstart-") as work:
        sample_path = Path(work) / "sample.npy"
        np.save(sample_path, sample.detach().to("cpu", torch.float32)[:1].contiguous().numpy())
        payload = {**asdict(spec), "sample": str(sample_path)}
        measured = run_child(payload, cwd=Path.cwd())
    memory = measured["peak_rss_bytes"] - measured["baseline_rss_bytes"]
    return {
        **{stage: measured[stage] for stage in STAGES},
        "peak_rss_bytes": measured["peak_rss_bytes"],
        "baseline_rss_bytes": measured["baseline_rss_bytes"],
        "inference_memory_bytes": memory,
        "steady_passes": spec.steady_passes,
        "subprocess_pid": measured["pid"],
        "method": (
            "fresh interpreter per backend (python coldstart_child.py, same environment and "
            "archbench); stages timed with time.perf_counter; memory = peak RSS (VmHWM) "
            "minus its peak right after the imports"
        ),
    }
