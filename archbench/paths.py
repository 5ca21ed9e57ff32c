"""Where archbench keeps its caches, each overridable by an environment variable.

Every cache path goes through here so that one variable moves all of them: the test
configuration points ``ARCHBENCH_CACHE`` at a temporary directory, and a test run can never
leave a peak probed on a busy CI machine in the user's real cache (later real profiles would
reuse it). Paths are computed when asked for, never at import time, so a variable set after
``import archbench`` still counts.
"""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "ARCHBENCH_CACHE"  # root of every cache below
DATA_ENV = "ARCHBENCH_DATA"  # datasets (and their statistics and decoded image folders)


def _from_env(name: str) -> Path | None:
    value = os.environ.get(name, "").strip()
    return Path(value).expanduser() if value else None


def cache_root() -> Path:
    """``$ARCHBENCH_CACHE``, else ``$XDG_CACHE_HOME/archbench``, else ``~/.cache/archbench``."""
    configured = _from_env(CACHE_ENV)
    if configured is not None:
        return configured
    xdg = _from_env("XDG_CACHE_HOME")
    return (xdg if xdg is not None else Path.home() / ".cache") / "archbench"


def data_dir() -> Path:
    """``$ARCHBENCH_DATA``, else ``<cache root>/data``."""
    return _from_env(DATA_ENV) or cache_root() / "data"


def peak_cache_dir() -> Path:
    """The roofline peak probes, one file per machine, device, threads and library versions."""
    return cache_root() / "peak"
