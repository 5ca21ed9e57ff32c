"""Directory locks: a suite directory or a run directory is written by one process at a time.

Two ``archbench suite`` commands on one directory would resume each other's live runs and
rewrite ``suite.json`` over each other; a ``--resume`` of a run another process is still
training would interleave two trainers' checkpoints. So the process that writes a directory
holds ``<dir>/.archbench.lock``: an exclusive ``flock`` on it, and inside it who holds it (pid,
host, start time, what for), so the refusal can name the holder.

The kernel drops a ``flock`` when its process dies, so a lock left by a killed process is free
and the next process simply takes it over. Where ``flock`` is refused (some network file
systems) a claim file beside the lock (``.archbench.lock.claim``) is the lock: created with
``O_CREAT | O_EXCL``, so of two processes exactly one gets it, and removed on release. A claim
whose holder is on this host and whose pid is gone is stale and taken over; one from another
host cannot be checked from here, so the refusal tells the user how to free it by hand.

Besides whole directories, a lock can guard one name inside a directory (``name=``): the
feature cache locks each entry's key while it extracts it, and a second process waits.

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
CLAIM_SUFFIX = ".claim"  # the O_EXCL claim used where flock is refused
POLL_SECONDS = 0.1
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


def read_holder(directory: Path, name: str = LOCK_FILE) -> LockHolder | None:
    """The holder recorded in ``directory``'s lock file (``None``: no lock file, or unreadable)."""
    return _read_record(Path(directory) / name)


def _read_record(path: Path) -> LockHolder | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
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


def _is_stale(holder: LockHolder | None) -> bool:
    """A claim whose holder is known dead: on this host, pid gone. An unreadable claim is being
    written (or was cut short): not stale, so it is never taken from a live writer."""
    return (
        holder is not None
        and holder.host == socket.gethostname()
        and holder.pid != os.getpid()
        and not _pid_alive(holder.pid)
    )


class DirectoryLock:
    """Hold ``directory`` for this process (``with DirectoryLock(path, "archbench suite"):``).

    :meth:`acquire` does not wait unless asked: a directory held by a live process is an
    :class:`ArchbenchError` naming that process. Re-acquiring a lock this object already holds
    is a no-op, so nested ``with`` blocks are safe. ``name`` picks another lock file in
    ``directory``, for a lock on one thing inside it rather than on the whole directory.
    """

    def __init__(self, directory: Path, purpose: str, *, name: str = LOCK_FILE) -> None:
        self.directory = Path(directory)
        self.path = self.directory / name
        self.claim_path = self.directory / (name + CLAIM_SUFFIX)
        self.purpose = purpose
        self._handle: IO[str] | None = None
        self._claimed = False  # True when held through the O_EXCL claim (no flock here)

    @property
    def held(self) -> bool:
        return self._handle is not None

    def acquire(self, wait: float | None = 0.0) -> DirectoryLock:
        """Take the lock; with ``wait`` seconds (``None``: as long as it takes) a live holder
        is waited for instead of refused at once."""
        if self._handle is not None:
            return self
        deadline = None if wait is None else time.monotonic() + wait
        while True:
            handle = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 (kept open while held)
            try:
                if self._lock(handle):
                    self._record(handle)
                    self._handle = handle
                    return self
            except BaseException:
                self._drop_claim()
                handle.close()
                raise
            handle.close()
            if deadline is not None and time.monotonic() >= deadline:
                raise self._refusal()
            time.sleep(POLL_SECONDS)

    def _record(self, handle: IO[str]) -> None:
        """Write who holds the lock into the lock file, for the next process's refusal."""
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(asdict(LockHolder.current(self.purpose))) + "\n")
        handle.flush()
        os.fsync(handle.fileno())

    def _lock(self, handle: IO[str]) -> bool:
        """Take the flock (``False``: a live process has it); fall back to the O_EXCL claim."""
        if fcntl is not None:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                return False
            except OSError as error:
                if error.errno not in _UNSUPPORTED:
                    raise
        return self._claim()

    def _claim(self) -> bool:
        """Create the claim file exclusively; take over a stale one (dead pid on this host)."""
        record = (json.dumps(asdict(LockHolder.current(self.purpose))) + "\n").encode()
        for _ in range(2):  # once, and once more after removing a stale claim
            try:
                descriptor = os.open(self.claim_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                holder = _read_record(self.claim_path)
                if holder is not None and holder.pid == os.getpid():
                    return True
                if not _is_stale(holder) or not self._remove_stale_claim(holder):
                    return False
                continue
            try:
                os.write(descriptor, record)
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
            self._claimed = True
            return True
        return False

    def _remove_stale_claim(self, stale: LockHolder) -> bool:
        """Move the stale claim aside; put it back if another process had replaced it first."""
        aside = self.claim_path.with_name(f"{self.claim_path.name}.{os.getpid()}.stale")
        try:
            os.rename(self.claim_path, aside)
        except FileNotFoundError:
            return True  # another process removed it: try to claim
        if _read_record(aside) == stale:
            aside.unlink(missing_ok=True)
            return True
        with contextlib.suppress(OSError):  # a live claim taken by mistake: restore it
            os.link(aside, self.claim_path)
        aside.unlink(missing_ok=True)
        return False

    def _drop_claim(self) -> None:
        if self._claimed:
            self._claimed = False
            self.claim_path.unlink(missing_ok=True)

    def _refusal(self) -> ArchbenchError:
        holder = None
        for _ in range(20):  # the holder writes its record just after taking the lock
            holder = _read_record(self.path) or _read_record(self.claim_path)
            if holder is not None:
                break
            time.sleep(0.05)
        who = holder.describe() if holder else "another process (no holder recorded)"
        if holder is not None and holder.host != socket.gethostname():
            advice = (
                f"it runs on another host ({holder.host}), so archbench cannot tell whether it "
                f"is still alive: wait for it or stop it there; if it is gone, remove "
                f"{self.claim_path if self.claim_path.exists() else self.path}"
            )
        elif holder is None and self.claim_path.exists():
            advice = (
                f"if no archbench process is using it, remove {self.claim_path} (a claim cut "
                "short before its holder was recorded)"
            )
        else:
            advice = (
                "wait for it to finish or stop it "
                "(a lock left by a dead process on this host is taken over automatically)"
            )
        return ArchbenchError(f"{self.directory} is in use by {who}; {advice}")

    def release(self) -> None:
        """Give the directory up; the lock file stays (removing it would race a new holder),
        the O_EXCL claim (where there is no flock) is removed."""
        handle, self._handle = self._handle, None
        if handle is None:
            return
        try:
            handle.seek(0)
            handle.truncate()
        finally:
            self._drop_claim()
            if fcntl is not None:
                with contextlib.suppress(OSError):  # closing the file releases it anyway
                    fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
            handle.close()

    def __enter__(self) -> DirectoryLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
