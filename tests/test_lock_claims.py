"""Locks where ``flock`` is refused, across real processes: one claim wins, messages are honest."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from archbench import locks
from archbench.errors import ArchbenchError
from archbench.locks import DirectoryLock

REPO = Path(__file__).resolve().parents[1]

# Each contender disables flock (as a file system without it would), waits for the others,
# then tries the lock once and, if it got it, holds it long enough for all to have tried.
# Reading a lock record is slowed down (a slow network file system), so a lock that checks
# the record and then writes its own lets every contender in.
CONTENDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from archbench import locks
    from archbench.errors import ArchbenchError
    locks.fcntl = None
    for reader in ("read_holder", "_read_record"):
        if hasattr(locks, reader):
            def slowed(*args, _real=getattr(locks, reader)):
                record = _real(*args)
                time.sleep(0.3)
                return record
            setattr(locks, reader, slowed)
    work, name, count = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    (work / f"ready-{name}").touch()
    while len(list(work.glob("ready-*"))) < count:
        time.sleep(0.001)
    try:
        lock = locks.DirectoryLock(work / "dir", "contender").acquire()
    except ArchbenchError:
        print("refused", flush=True)
    else:
        print("held", flush=True)
        time.sleep(2)
        lock.release()
    """
)


@pytest.mark.slow
def test_without_flock_exactly_one_of_several_processes_gets_the_lock(tmp_path) -> None:
    (tmp_path / "dir").mkdir()
    count = 4
    env = os.environ | {"PYTHONPATH": str(REPO)}
    contenders = [
        subprocess.Popen(
            [sys.executable, "-c", CONTENDER, str(tmp_path), str(i), str(count)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for i in range(count)
    ]
    outcomes = []
    for contender in contenders:
        stdout, stderr = contender.communicate(timeout=120)
        assert contender.returncode == 0, stderr
        outcomes.append(stdout.strip())
    assert sorted(outcomes) == ["held"] + ["refused"] * (count - 1)


def _claim(directory: Path, pid: int, host: str) -> None:
    record = {"pid": pid, "host": host, "started_at": "2026-01-01T00:00:00+00:00",
              "purpose": "archbench suite"}  # fmt: skip
    text = json.dumps(record)
    (directory / (locks.LOCK_FILE + locks.CLAIM_SUFFIX)).write_text(text)
    (directory / locks.LOCK_FILE).write_text(text)


def test_a_holder_on_another_host_is_not_promised_a_take_over(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(locks, "fcntl", None)
    _claim(tmp_path, 1, "elsewhere.example")
    with pytest.raises(ArchbenchError) as refused:
        DirectoryLock(tmp_path, "archbench run").acquire()
    message = str(refused.value)
    assert "taken over automatically" not in message
    assert "elsewhere.example" in message and "remove" in message and "\n" not in message
    assert str(tmp_path / (locks.LOCK_FILE + locks.CLAIM_SUFFIX)) in message


def test_without_flock_a_released_claim_is_gone_and_a_dead_one_is_taken_over(
    tmp_path, monkeypatch
) -> None:
    monkeypatch.setattr(locks, "fcntl", None)
    claim = tmp_path / (locks.LOCK_FILE + locks.CLAIM_SUFFIX)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    _claim(tmp_path, int(dead.stdout), socket.gethostname())
    with DirectoryLock(tmp_path, "archbench suite"):
        assert json.loads(claim.read_text())["pid"] == os.getpid()
    assert not claim.exists()
    _claim(tmp_path, os.getppid(), socket.gethostname())  # the runner's parent: alive
    with pytest.raises(ArchbenchError, match="wait for it to finish"):
        DirectoryLock(tmp_path, "archbench suite").acquire()


def test_a_waiting_acquire_gets_the_lock_once_it_is_released(tmp_path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent("""
            import sys, time
            from archbench.locks import DirectoryLock
            with DirectoryLock(sys.argv[1], "extracting", name=".key.lock"):
                print("held", flush=True)
                time.sleep(1)
        """), str(tmp_path)],
        env=os.environ | {"PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(ArchbenchError, match="extracting"):
        DirectoryLock(tmp_path, "waiting", name=".key.lock").acquire()
    with DirectoryLock(tmp_path, "waiting", name=".key.lock").acquire(wait=60) as lock:
        assert lock.held
    holder.wait(timeout=30)
