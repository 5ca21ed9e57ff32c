"""Shared fixtures: the real CIFAR-10 JPEGs from ``../shared/data``, extracted once per machine."""

from __future__ import annotations

import hashlib
import os
import tarfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("ARCHBENCH_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
CACHE_ROOT = Path(
    os.environ.get("ARCHBENCH_TEST_CACHE", Path.home() / ".cache" / "archbench-tests")
)


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
