"""Directory locks, exercised across real processes: a live holder is named, a dead one is gone."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap

import pytest

from archbench import locks
from archbench.errors import ArchbenchError
from archbench.locks import LOCK_FILE, DirectoryLock, read_holder

HOLDER_SCRIPT = textwrap.dedent(
    """
    import sys
    from archbench.locks import DirectoryLock
    with DirectoryLock(sys.argv[1], "archbench suite"):
        print("held", flush=True)
        sys.stdin.readline()  # hold until told (or killed)
    """
)


@pytest.fixture
def holder_process(tmp_path):
    """A separate Python process holding ``tmp_path`` until its stdin closes."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER_SCRIPT, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout.readline().strip() == "held"
    yield process
    if process.poll() is None:
        process.kill()
    process.wait(timeout=30)


def test_a_live_holder_in_another_process_is_named(tmp_path, holder_process):
    with pytest.raises(ArchbenchError) as refused:
        DirectoryLock(tmp_path, "archbench run --resume").acquire()
    message = str(refused.value)
    assert f"pid {holder_process.pid} on {socket.gethostname()}" in message
    assert "archbench suite" in message and str(tmp_path) in message
    assert "\n" not in message


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path, holder_process):
    holder_process.send_signal(signal.SIGKILL)  # no clean-up code runs
    holder_process.wait(timeout=30)
    assert read_holder(tmp_path).pid == holder_process.pid  # the stale record is still there
    with DirectoryLock(tmp_path, "archbench suite") as lock:
        assert lock.held
        assert read_holder(tmp_path).pid == os.getpid()


def test_released_lock_is_free_and_records_nobody(tmp_path):
    lock = DirectoryLock(tmp_path, "archbench suite").acquire()
    assert lock.acquire() is lock  # re-acquiring a held lock is a no-op
    record = json.loads((tmp_path / LOCK_FILE).read_text())
    assert record["pid"] == os.getpid() and record["purpose"] == "archbench suite"
    lock.release()
    assert read_holder(tmp_path) is None
    with DirectoryLock(tmp_path, "archbench run"):  # free again, from this process too
        pass


def test_without_flock_a_dead_pid_on_this_host_is_stale(tmp_path, monkeypatch):
    """Some network file systems refuse flock: the recorded pid and host decide instead."""
    monkeypatch.setattr(locks, "fcntl", None)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    record = {"pid": int(dead.stdout), "host": socket.gethostname(),
              "started_at": "2026-01-01T00:00:00+00:00", "purpose": "archbench suite"}  # fmt: skip
    claim = tmp_path / (LOCK_FILE + locks.CLAIM_SUFFIX)  # without flock, the O_EXCL claim
    claim.write_text(json.dumps(record))
    with DirectoryLock(tmp_path, "archbench suite"):
        assert read_holder(tmp_path).pid == os.getpid()
    live = record | {"pid": os.getppid()}  # the test runner's parent: certainly alive
    claim.write_text(json.dumps(live))
    with pytest.raises(ArchbenchError, match=f"pid {os.getppid()}"):
        DirectoryLock(tmp_path, "archbench suite").acquire()
