"""The numeric policy of CUDA measurements: fp32 means fp32 unless TF32 is asked for, and recorded.

PyTorch's defaults differ per library: cuBLAS matmuls run in full fp32, but cuDNN convolutions
may use TF32 (``torch.backends.cudnn.allow_tf32`` is ``True``). A cuda-eager latency would then
come from TF32 convolutions while the roofline's peak probe (a matmul) measures fp32, and the
efficiency table would divide figures of two precisions. So every CUDA measurement (latency and
peak alike) runs inside :func:`applied`, which sets both TF32 switches from one
:class:`PrecisionPolicy` (TF32 off unless ``--tf32``) and fixes ``cudnn.benchmark``, and
``profile.json`` records :func:`current_state` with the GPU's clocks.

The switches exist on every torch build, so the policy is set, restored and tested on machines
without a GPU too; only :func:`gpu_clocks` needs ``nvidia-smi``.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

import torch

# nvidia-smi fields for the clocks a measurement ran at; current and maximum, so a throttled
# (hot or power-capped) GPU shows as such.
CLOCK_FIELDS = (
    "clocks.sm",
    "clocks.mem",
    "clocks.max.sm",
    "clocks.max.mem",
    "power.draw",
    "power.limit",
    "temperature.gpu",
    "pstate",
)


@dataclass(frozen=True)
class PrecisionPolicy:
    """What CUDA fp32 work may use: ``tf32`` for matmuls and convolutions, cuDNN autotuning."""

    tf32: bool = False
    cudnn_benchmark: bool = False  # autotuning picks per-run algorithms: less reproducible

    def to_dict(self) -> dict:
        return asdict(self)


def current_state() -> dict:
    """The switches as torch sees them now (what a measurement actually ran under)."""
    backends = torch.backends
    return {
        "tf32_matmul": bool(backends.cuda.matmul.allow_tf32),
        "tf32_cudnn": bool(backends.cudnn.allow_tf32),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "cudnn_benchmark": bool(backends.cudnn.benchmark),
        "cudnn_deterministic": bool(backends.cudnn.deterministic),
    }


@contextlib.contextmanager
def applied(policy: PrecisionPolicy) -> Iterator[dict]:
    """Run under ``policy``, restoring the previous switches afterwards; yields the state."""
    backends = torch.backends
    previous = (
        backends.cuda.matmul.allow_tf32,
        backends.cudnn.allow_tf32,
        backends.cudnn.benchmark,
    )
    backends.cuda.matmul.allow_tf32 = policy.tf32
    backends.cudnn.allow_tf32 = policy.tf32
    backends.cudnn.benchmark = policy.cudnn_benchmark
    try:
        yield current_state()
    finally:
        (
            backends.cuda.matmul.allow_tf32,
            backends.cudnn.allow_tf32,
            backends.cudnn.benchmark,
        ) = previous


def parse_clocks(text: str) -> dict | None:
    """One ``nvidia-smi --query-gpu=<CLOCK_FIELDS> --format=csv,noheader,nounits`` line -> dict.

    Numbers become floats; ``[N/A]`` or ``[Not Supported]`` become ``None``; a line with the
    wrong number of fields is ``None`` (an unknown format is not guessed at).
    """
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return None
    values = [value.strip() for value in lines[0].split(",")]
    if len(values) != len(CLOCK_FIELDS):
        return None
    clocks: dict = {}
    for name, value in zip(CLOCK_FIELDS, values, strict=True):
        key = name.replace(".", "_")
        if value.startswith("[") or not value:
            clocks[key] = None
            continue
        try:
            clocks[key] = float(value)
        except ValueError:
            clocks[key] = value  # pstate "P0"
    return clocks


def _nvidia_smi(fields: str) -> str:
    completed = subprocess.run(
        ["nvidia-smi", f"--query-gpu={fields}", "--format=csv,noheader,nounits", "--id=0"],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    return completed.stdout


def gpu_clocks(query: Callable[[str], str] = _nvidia_smi) -> dict | None:
    """GPU 0's clocks (MHz), power (W), temperature (C) and P-state, or ``None`` if unreadable."""
    try:
        return parse_clocks(query(",".join(CLOCK_FIELDS)))
    except (OSError, subprocess.SubprocessError):
        return None
