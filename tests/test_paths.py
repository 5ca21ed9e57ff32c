"""Cache paths follow their environment variables; a real profile leaves the home untouched."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from archbench import paths
from archbench.measure.roofline import peak_cache_path

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_every_cache_path_follows_archbench_cache(monkeypatch, tmp_path):
    monkeypatch.delenv("ARCHBENCH_DATA", raising=False)
    monkeypatch.setenv("ARCHBENCH_CACHE", str(tmp_path / "c"))
    assert paths.cache_root() == tmp_path / "c"
    assert paths.data_dir() == tmp_path / "c" / "data"
    assert paths.peak_cache_dir() == tmp_path / "c" / "peak"
    assert peak_cache_path(None, "cpu", 1).parent == tmp_path / "c" / "peak"
    monkeypatch.setenv("ARCHBENCH_DATA", str(tmp_path / "d"))
    assert paths.data_dir() == tmp_path / "d"


def test_defaults_are_xdg_then_home(monkeypatch, tmp_path):
    for name in ("ARCHBENCH_CACHE", "ARCHBENCH_DATA", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert paths.peak_cache_dir() == tmp_path / "home" / ".cache" / "archbench" / "peak"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert paths.data_dir() == tmp_path / "xdg" / "archbench" / "data"


def test_the_test_session_itself_uses_temporary_caches():
    """conftest points the caches away from the home before any module is imported."""
    home = Path.home().resolve()
    for path in (paths.cache_root(), paths.data_dir(), Path(os.environ["MPLCONFIGDIR"])):
        assert home not in path.resolve().parents


@pytest.mark.slow
def test_a_real_profile_writes_nothing_under_home(tmp_path):
    """The peak probe, the data statistics and the outputs all land where the variables say.

    ``XDG_CACHE_HOME`` stays pointed away (as conftest sets it): ONNX Runtime itself writes a
    device id under ``$XDG_CACHE_HOME/Microsoft`` (default ``~/.cache``) on every session.
    """
    home, cache = tmp_path / "home", tmp_path / "cache"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "ARCHBENCH_DATA"}
    env.update(
        HOME=str(home),
        ARCHBENCH_CACHE=str(cache),
        XDG_CACHE_HOME=str(tmp_path / "xdg"),
        PYTHONPATH=str(REPO_ROOT),
    )
    command = [
        sys.executable, "-m", "archbench", "profile", "--arch", "squeezenet_dsc", "--quiet",
        "--backends", "cpu-eager", "--samples", "5", "--warmup", "1", "--batch-sizes", "1",
        "--out", str(tmp_path / "out"),
    ]  # fmt: skip
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr
    assert list(home.rglob("*")) == []
    assert list((cache / "peak").glob("*.json"))  # the probe went to $ARCHBENCH_CACHE
    assert (tmp_path / "out" / "profile.json").is_file()
