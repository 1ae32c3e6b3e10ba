"""One writer per workspace: an OS file lock, released by the kernel when the holder dies.

The lock file names the holder's pid and host so a refused writer can say who holds it. A lock
left behind by a dead process is no obstacle: ``flock`` is released with the process, so the
next writer simply takes it over.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from pathlib import Path

from ragkit.errors import WorkspaceLockedError

__all__ = ["WorkspaceLock"]


class WorkspaceLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self, *, wait: float = 0.0) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "unknown"
                    os.close(fd)
                    raise WorkspaceLockedError(
                        f"{self.path.parent}: another ragkit job is writing to this workspace "
                        f"({holder}). Wait for it to finish, or pass --wait SECONDS."
                    ) from None
                time.sleep(0.2)
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}".encode(), 0)
        except OSError:
            # A full disk: the lock must not stay taken by an fd nobody will release.
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        os.ftruncate(self._fd, 0)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def held_elsewhere(self) -> bool:
        """Whether another writer holds the lock right now: a peek for read-only checks, which
        must not mistake a running writer's next generation for a crash's leftovers. It takes a
        shared lock for an instant and writes nothing, so it works on a read-only workspace (a
        writer starting in that very instant without ``wait`` would be refused, as by any job)."""
        if self._fd is not None:
            return False
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return False
        finally:
            os.close(fd)

    def __enter__(self) -> WorkspaceLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
