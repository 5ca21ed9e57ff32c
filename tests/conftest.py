"""Shared test configuration.

* Hermetic caches: before any test module is imported, every cache archbench (or matplotlib)
  would keep under the user's home, and the per-node lock, point at one temporary directory for
  the session, removed at the end. A test run must never leave a peak probed on a busy machine
  in the user's real cache, where later real profiles would reuse it. Subprocesses inherit the
  variables.
* The real CIFAR-10 JPEGs from ``../shared/data``, extracted once per machine into the node's
  temporary directory (``$ARCHBENCH_TEST_CACHE`` to move it), never under the home directory.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("ARCHBENCH_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
_uid = os.getuid() if hasattr(os, "getuid") else 0
CACHE_ROOT = Path(
    os.environ.get("ARCHBENCH_TEST_CACHE", Path(tempfile.gettempdir()) / f"archbench-tests-{_uid}")
)

# Variables pointed into the session's temporary directory (subdirectory names as values).
HERMETIC_ENV = {
    "ARCHBENCH_CACHE": "archbench-cache",  # peak probes and the default data directory
    "ARCHBENCH_DATA": "archbench-data",  # dataset statistics and decoded image folders
    "MPLCONFIGDIR": "matplotlib",  # matplotlib's config and font cache
    "XDG_CACHE_HOME": "xdg-cache",  # anything else that follows the XDG convention
    # The per-node lock of its own: tests assert no timings, so they need not wait for a real
    # training job's epoch to end before profiling (minutes on a busy node), nor delay one.
    "ARCHBENCH_LOCK_DIR": "node-locks",
}
_session_dir: Path | None = None
_saved_env: dict[str, str | None] = {}


def pytest_configure(config: pytest.Config) -> None:
    """Runs before collection, so module-level defaults already see the temporary caches."""
    global _session_dir
    _session_dir = Path(tempfile.mkdtemp(prefix="archbench-test-session-"))
    for name, folder in HERMETIC_ENV.items():
        _saved_env[name] = os.environ.get(name)
        os.environ[name] = str(_session_dir / folder)


# Fixtures that train a network for the session: a test using one is slow by what it needs, even
# where another test paid the training first (tests are selected, and run, in any order).
TRAINING_FIXTURES = {"digits_run", "cifar_mini_run", "done_when_run"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``-m "not slow"``, the inner loop, leaves out every test that needs a trained run."""
    for item in items:
        if TRAINING_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


def pytest_unconfigure(config: pytest.Config) -> None:
    for name, value in _saved_env.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    if _session_dir is not None:
        shutil.rmtree(_session_dir, ignore_errors=True)


def extract_archive(name: str) -> Path:
    """Extract ``shared/data/<name>.tar.gz`` into a cache keyed by its hash; return the folder."""
    archive = SHARED_DATA / f"{name}.tar.gz"
    if not archive.is_file():
        message = f"{archive} not found (set ARCHBENCH_SHARED_DATA)"
        if os.environ.get("CI"):
            pytest.fail(message)  # CI always has shared/ beside the clone: a miss is a real error
        pytest.skip(message)
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()[:16]
    target = CACHE_ROOT / f"{name}-{digest}"
    done = target / ".extracted"
    if not done.exists():
        target.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archive) as tar:
            tar.extractall(target, filter="data")
        done.touch()
    return target / name


@pytest.fixture(scope="session")
def cifar10_mini() -> Path:
    """Folder with ``train/<class>/*.jpg`` (200 per class) and ``test/<class>/*.jpg`` (100)."""
    return extract_archive("cifar10-jpg-mini")


@pytest.fixture(scope="module")
def one_torch_thread():
    """For modules of small tensors (``pytestmark = pytest.mark.usefixtures(...)``): one thread
    is faster for them, and immune to a busy machine."""
    from archbench.measure.models import torch_threads

    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """A module's own archbench data directory (dataset statistics, decoded images)."""
    return tmp_path_factory.mktemp("archbench-data")


@pytest.fixture(autouse=True)
def _torch_threads_restored():
    """A test that leaves torch on another thread count changes the speed of every later one
    (``train_run`` used to leave its ``--threads`` behind): restore the count and warn."""
    import warnings

    import torch

    before = torch.get_num_threads()
    yield
    after = torch.get_num_threads()
    if after != before:
        torch.set_num_threads(before)
        warnings.warn(f"the test left torch on {after} threads (was {before})", stacklevel=1)


# ------------------------------------------------------------------ one trained run for many tests

TINY_NET = f"{Path(__file__).with_name('tiny_digits_net.py')}:build"
"""``--arch`` for the tiny CNN: where the network is not what a test is about."""
TINY_NET_WIDE = f"{Path(__file__).with_name('tiny_digits_net.py')}:build_wide"
"""A second tiny CNN, for suites that need two distinct entries."""

PROFILE_FAST = ["--backends", "cpu", "--samples", "30", "--warmup", "2", "--batch-sizes", "1,8",
                "--calibration-samples", "64"]  # fmt: skip
"""Profile flags that keep every figure but time few samples: tests assert no timings."""


@dataclass(frozen=True)
class TrainedRun:
    run_dir: Path
    data_dir: Path


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory) -> TrainedRun:
    """One real ``archbench run``: squeezenet_dsc, one epoch on digits, profiled on every CPU
    backend with ``PROFILE_FAST``. Shared by every test that needs *a* trained, profiled study
    network (profile, serve, report, compare, features, retrieval): read it, never change it;
    ``copy_run`` it first to change anything."""
    from archbench.cli import main

    tmp = tmp_path_factory.mktemp("digits-run")
    code = main(
        ["run", "--arch", "squeezenet_dsc", "--dataset", "digits", "--max-epochs", "1",
         "--runs-dir", str(tmp / "runs"), "--data-dir", str(tmp / "data"), "--quiet",
         *PROFILE_FAST]
    )  # fmt: skip
    assert code == 0
    (run_dir,) = (tmp / "runs").iterdir()
    return TrainedRun(run_dir=run_dir, data_dir=tmp / "data")


def copy_run(run: TrainedRun, folder: Path) -> Path:
    """A private copy of a shared run directory, under ``folder``, for a test that changes it."""
    target = folder / run.run_dir.name
    shutil.copytree(run.run_dir, target)
    return target


@pytest.fixture(scope="session")
def cifar_mini_run(tmp_path_factory, cifar10_mini) -> TrainedRun:
    """squeezenet_dsc trained by ``archbench run`` for one epoch on the real CIFAR-10 mini JPEGs
    (2,000 train and validation, 1,000 test), profiled on both fp32 CPU backends without cold
    start. Shared, read-only, by the real-JPEG profile test and the transfer tests' backbone.

    One epoch teaches it little about CIFAR, but its features already find digits of one class
    well above chance, which a freshly initialized network's do not (its eval-mode BatchNorm
    leaves features that barely vary between images)."""
    from archbench.cli import main

    tmp = tmp_path_factory.mktemp("cifar-mini-run")
    code = main(
        ["run", "--arch", "squeezenet_dsc", "--dataset", f"imagefolder:{cifar10_mini}",
         "--max-epochs", "1", "--threads", "2", "--runs-dir", str(tmp / "runs"),
         "--data-dir", str(tmp / "data"), "--quiet", "--backends", "cpu-eager,cpu-onnxruntime",
         "--no-cold-start", *PROFILE_FAST[2:]]
    )  # fmt: skip
    assert code == 0
    (run_dir,) = (tmp / "runs").iterdir()
    return TrainedRun(run_dir=run_dir, data_dir=tmp / "data")
