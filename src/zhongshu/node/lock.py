"""One process per node home: an advisory lock on the home's ``LOCK`` file.

A process that serves a home (``node start``, ``up``) or rewrites it (``restore``) takes an
exclusive ``flock`` on ``HOME/LOCK`` before it opens the store, the WAL or the signer state,
and keeps it for its life. The kernel drops the lock when the process exits or dies (``kill -9``
too), so a ``LOCK`` file left behind never blocks a later start; the file holds the holder's pid
for the refusal message only. The descriptor is not inherited by child processes.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from types import TracebackType

from zhongshu.node.home import HomeError

LOCK_FILE = "LOCK"


class HomeLocked(HomeError):
    """Another process holds the lock of a home."""

    def __init__(self, home: Path, pid: int | None) -> None:
        holder = f"another process (pid {pid})" if pid else "another process"
        super().__init__(f"{home} is in use by {holder}; stop it first or use another --home")
        self.home = home
        self.pid = pid
        """The holder's process id as it wrote it into the lock file, if readable."""


class HomeLock:
    """The held lock of one home; ``release`` (or leaving the ``with`` block) gives it up."""

    def __init__(self, home: Path, fd: int) -> None:
        self.home = home
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> HomeLock:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        return int(os.pread(fd, 32, 0).decode().strip())
    return None


def acquire_home_lock(home: Path) -> HomeLock:
    """Lock ``home`` for this process, or raise HomeLocked at once if another process holds it.

    Never waits. Raises HomeError if ``home`` is not a directory.
    """
    if not home.is_dir():
        raise HomeError(f"{home} is not a node home (no such directory)")
    fd = os.open(home / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = _read_pid(fd)
        os.close(fd)
        raise HomeLocked(home, pid) from None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return HomeLock(home, fd)


def check_home_unlocked(home: Path) -> None:
    """Raise HomeLocked if a process holds ``home`` right now (a probe: the lock is not kept)."""
    if home.is_dir():
        acquire_home_lock(home).release()
