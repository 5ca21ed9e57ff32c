"""What machine and software a measurement ran on.

Every result file archbench writes carries :func:`describe_system`: a timing means nothing
without the CPU, the thread count, the library versions and the commit that produced it.
:func:`machine_id` is a short, hostname-independent key for per-machine caches (the peak probe).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
import subprocess
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path

import torch

from .. import __version__

# Distribution names to try for each reported package (the GPU build of onnxruntime ships
# under its own name).
_PACKAGES: dict[str, tuple[str, ...]] = {
    "torch": ("torch",),
    "torchvision": ("torchvision",),
    "onnx": ("onnx",),
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu"),
    "numpy": ("numpy",),
}


@lru_cache(maxsize=1)
def cpu_model() -> str:
    """The CPU's marketing name from ``/proc/cpuinfo``, else :func:`platform.processor`."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        text = ""
    # x86 reports "model name"; some ARM kernels only "Hardware", "Processor" or "CPU part".
    for key in ("model name", "Hardware", "Processor", "cpu model", "CPU part"):
        for line in text.splitlines():
            name, sep, value = line.partition(":")
            if sep and name.strip() == key and value.strip():
                return " ".join(value.split())
    return platform.processor() or platform.machine() or "unknown"


def logical_cores() -> int:
    return os.cpu_count() or 1


def _usable_cores() -> int:
    """Cores this process may run on (a container or ``taskset`` can restrict them)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return logical_cores()


def machine_id() -> str:
    """A stable 12-hex-digit key from the CPU model, core count and OS/architecture.

    The hostname is left out on purpose: two identical cloud machines share one cache entry,
    and renaming a host does not invalidate it.
    """
    key = "|".join((cpu_model(), str(logical_cores()), platform.system(), platform.machine()))
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def _version(names: tuple[str, ...]) -> str | None:
    for name in names:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def _nvidia_driver() -> str | None:
    try:
        text = Path("/proc/driver/nvidia/version").read_text()
    except OSError:
        text = ""
    for word in text.split():
        # "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  ..."
        if word[:1].isdigit() and word.count(".") >= 1:
            return word
    try:
        completed = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    lines = completed.stdout.strip().splitlines()
    return lines[0].strip() if lines else None


def describe_gpu() -> dict | None:
    """Name, driver, CUDA and cuDNN versions of GPU 0, or ``None`` where CUDA is unavailable."""
    if not torch.cuda.is_available():
        return None
    properties = torch.cuda.get_device_properties(0)
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return {
        "name": torch.cuda.get_device_name(0),
        "count": torch.cuda.device_count(),
        "memory_bytes": int(properties.total_memory),
        "capability": f"{properties.major}.{properties.minor}",
        "driver": _nvidia_driver(),
        "cuda": torch.version.cuda,
        "cudnn": cudnn,
    }


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        completed = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return completed.stdout.strip()


@dataclass(frozen=True)
class GitState:
    """The commit of a checkout and the tracked files that differ from it."""

    commit: str
    changed: tuple[str, ...] = ()

    @property
    def dirty(self) -> bool:
        return bool(self.changed)

    def describe(self, most: int = 8) -> str:
        """``<commit> (clean)``, or ``<commit> (dirty: a.py, b.py, +3 more)``."""
        if not self.dirty:
            return f"{self.commit} (clean)"
        shown = ", ".join(self.changed[:most])
        more = f", +{len(self.changed) - most} more" if len(self.changed) > most else ""
        return f"{self.commit} (dirty: {shown}{more})"


def git_state(path: Path | None = None) -> GitState | None:
    """Commit and modified tracked files of the checkout holding ``path`` (default: this
    package); ``None`` when it is not tracked by git, e.g. installed into a virtual environment
    that happens to sit inside some other checkout."""
    package = Path(path) if path is not None else Path(__file__).resolve().parents[1]
    if _git(["ls-files", "--error-unmatch", "__init__.py"], package) is None:
        return None
    commit = _git(["rev-parse", "HEAD"], package)
    if not commit:
        return None
    changed = _git(["diff", "--name-only", "HEAD"], package) or ""  # staged or not
    return GitState(commit, tuple(sorted(changed.split())))


def git_commit(path: Path | None = None) -> str | None:
    """Commit of the git checkout holding ``path`` (default: this package), ``-dirty`` if modified.

    ``None`` when the package is not tracked by git (see :func:`git_state`).
    """
    state = git_state(path)
    if state is None:
        return None
    return f"{state.commit}-dirty" if state.dirty else state.commit


def describe_system(threads: int | None = None) -> dict:
    """Hardware, software and provenance of the current process, as a JSON-ready dict.

    Args:
        threads: the intra-op thread count the measurements use; default
            ``torch.get_num_threads()``.
    """
    return {
        "cpu_model": cpu_model(),
        "logical_cores": logical_cores(),
        "usable_cores": _usable_cores(),
        "torch_threads": int(threads) if threads is not None else torch.get_num_threads(),
        "os": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "versions": {name: _version(dists) for name, dists in _PACKAGES.items()},
        "gpu": describe_gpu(),
        "archbench_version": __version__,
        "git_commit": git_commit(),
        "machine_id": machine_id(),
        "datetime_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
