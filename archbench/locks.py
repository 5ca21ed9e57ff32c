"""Directory locks: a suite directory or a run directory is written by one process at a time.

Two ``archbench suite`` commands on one directory would resume each other's live runs and
rewrite ``suite.json`` over each other; a ``--resume`` of a run another process is still
training would interleave two trainers' checkpoints. So the process that writes a directory
holds ``<dir>/.archbench.lock``: an exclusive ``flock`` on it, and inside it who holds it (pid,
host, start time, what for), so the refusal can name the holder.

The kernel drops a ``flock`` when its process dies, so a lock left by a killed process is free
and the next process simply takes it over. Where ``flock`` is refused (some network file
systems) the file's contents decide instead: a holder on this host whose pid is gone is stale.

This is not :mod:`archbench.exclusive` (the per-node lock that keeps training out of a
latency measurement): that one is about the machine, this one about a directory's files.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO

from .errors import ArchbenchError

try:
    import fcntl
except ImportError:  # Windows: no flock; the pid check below still applies
    fcntl = None

LOCK_FILE = ".archbench.lock"
_UNSUPPORTED = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}


@dataclass(frozen=True)
class LockHolder:
    """Who holds a directory: enough to find the process and decide what to do."""

    pid: int
    host: str
    started_at: str
    purpose: str

    def describe(self) -> str:
        return f"{self.purpose} (pid {self.pid} on {self.host}, since {self.started_at})"

    @classmethod
    def current(cls, purpose: str) -> LockHolder:
        return cls(
            pid=os.getpid(),
            host=socket.gethostname(),
            started_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            purpose=purpose,
        )


def read_holder(directory: Path) -> LockHolder | None:
    """The holder recorded in ``directory``'s lock file (``None``: no lock file, or unreadable)."""
    try:
        data = json.loads((Path(directory) / LOCK_FILE).read_text(encoding="utf-8"))
        return LockHolder(**{name: data[name] for name in LockHolder.__dataclass_fields__})
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    except OSError:
        return False
    return True


class DirectoryLock:
    """Hold ``directory`` for this process (``with DirectoryLock(path, "archbench suite"):``).

    :meth:`acquire` never waits: a directory held by a live process is an
    :class:`ArchbenchError` naming that process. Re-acquiring a lock this object already holds
    is a no-op, so nested ``with`` blocks are safe.
    """

    def __init__(self, directory: Path, purpose: str) -> None:
        self.directory = Path(directory)
        self.path = self.directory / LOCK_FILE
        self.purpose = purpose
        self._handle: IO[str] | None = None

    @property
    def held(self) -> bool:
        return self._handle is not None

    def acquire(self) -> DirectoryLock:
        if self._handle is not None:
            return self
        handle = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 (kept open while held)
        try:
            if not self._lock(handle):
                raise self._refusal()
            me = LockHolder.current(self.purpose)
            handle.seek(0)
            handle.truncate()
            handle.write(json.dumps(asdict(me)) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        except BaseException:
            handle.close()
            raise
        self._handle = handle
        return self

    def _lock(self, handle: IO[str]) -> bool:
        """Take the flock (``False``: a live process has it); fall back to the pid check."""
        if fcntl is not None:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                return False
            except OSError as error:
                if error.errno not in _UNSUPPORTED:
                    raise
        holder = read_holder(self.directory)
        if holder is None or holder.pid == os.getpid():
            return True
        return holder.host == socket.gethostname() and not _pid_alive(holder.pid)

    def _refusal(self) -> ArchbenchError:
        holder = None
        for _ in range(20):  # the holder writes its record just after taking the lock
            holder = read_holder(self.directory)
            if holder is not None:
                break
            time.sleep(0.05)
        who = holder.describe() if holder else "another process (no holder recorded)"
        return ArchbenchError(
            f"{self.directory} is in use by {who}; wait for it to finish or stop it "
            f"(a lock left by a dead process is taken over automatically)"
        )

    def release(self) -> None:
        """Give the directory up; the lock file stays (removing it would race a new holder)."""
        handle, self._handle = self._handle, None
        if handle is None:
            return
        try:
            handle.seek(0)
            handle.truncate()
        finally:
            if fcntl is not None:
                with contextlib.suppress(OSError):  # closing the file releases it anyway
                    fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
            handle.close()

    def __enter__(self) -> DirectoryLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
