"""The single-instance lock: `flock` on `<run_dir>/edgekeeper.lock`, which holds our pid.

The kernel drops the lock when the process dies, so a crash never leaves a stale lock; the file
stays (removing it would race with a starting instance). It is opened without following a link
and must be a regular file of ours with one link, since the pid is written into it: anything
planted in its place is refused (`UnsafeFile`), never truncated.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from firmware.errors import DaemonError
from firmware.store.files import open_own_file

LOCK_NAME = "edgekeeper.lock"
LOCK_MODE = 0o644


class InstanceLock:
    """Held for the daemon's lifetime; a second `acquire` elsewhere fails naming our pid."""

    def __init__(self, run_dir: Path | str) -> None:
        self.path = Path(run_dir) / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise DaemonError naming the pid that holds it."""
        try:
            fd = open_own_file(self.path, os.O_RDWR | os.O_CREAT, LOCK_MODE, in_place=True)
        except OSError as exc:
            raise DaemonError(
                f"cannot open lock file {self.path}: {exc.strerror}",
                hint=f"make {self.path.parent} writable or set [paths] run_dir elsewhere",
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f"pid {holder}" if holder else "another process"
            raise DaemonError(
                f"edgekeeper is already running ({who} holds {self.path})",
                hint="stop that instance first, or give this one another [paths] run_dir",
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Let go of the lock (also happens when the process exits)."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)
            self._fd = None


def _read_pid(fd: int) -> int | None:
    text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    return int(text) if text.isdigit() else None
