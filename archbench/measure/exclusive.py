"""A per-node reader-writer lock so that latency is never measured while another job computes.

Training epochs hold the lock *shared* (any number at once); a profile holds it *exclusive*, so
it starts only when no epoch is running on this node and no epoch starts until it is done. A
second "intent" lock keeps waiting profiles from being starved: a profile takes the intent lock
first, and an epoch passes through the intent lock before it takes its shared lock.

The locks are ``flock`` files in the node's temporary directory, so every archbench process on
the node (a suite, a Ray worker, a user's second terminal) honours them, and the kernel releases
them when a process dies. Where ``fcntl`` does not exist the lock is a no-op and says so.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

LOCK_DIR_ENV = "ARCHBENCH_LOCK_DIR"


def lock_dir() -> Path:
    """``$ARCHBENCH_LOCK_DIR`` or ``<tmp>/archbench-locks-<uid>``: node-local by construction."""
    configured = os.environ.get(LOCK_DIR_ENV)
    uid = os.getuid() if hasattr(os, "getuid") else 0
    path = (
        Path(configured) if configured else Path(tempfile.gettempdir()) / f"archbench-locks-{uid}"
    )
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def _flock(path: Path, mode: int) -> Iterator[None]:
    with open(path, "a+") as handle:
        fcntl.flock(handle.fileno(), mode)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


@contextlib.contextmanager
def computing() -> Iterator[None]:
    """Hold for a stretch of computation (a training epoch) that a profile must not overlap."""
    if fcntl is None:
        yield
        return
    folder = lock_dir()
    handle = open(folder / "node.lock", "a+")  # noqa: SIM115 (closed in finally)
    try:
        with _flock(folder / "intent.lock", fcntl.LOCK_SH):  # waits while a profile is queued
            fcntl.flock(handle.fileno(), fcntl.LOCK_SH)
        yield
    finally:
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        handle.close()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


@contextlib.contextmanager
def measuring(record: dict) -> Iterator[dict]:
    """Hold the node alone while measuring; fills ``record`` with when and how long it waited."""
    record.update(exclusive=fcntl is not None, lock_dir=str(lock_dir()) if fcntl else None)
    if fcntl is None:
        record.update(reason="no fcntl on this platform: other jobs were not excluded")
        yield record
        return
    folder = lock_dir()
    asked = time.perf_counter()
    with _flock(folder / "intent.lock", fcntl.LOCK_EX), _flock(folder / "node.lock", fcntl.LOCK_EX):
        record.update(waited_s=round(time.perf_counter() - asked, 3), held_from=_now())
        try:
            yield record
        finally:
            record["held_until"] = _now()
