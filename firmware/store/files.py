"""Opening the daemon's own files by name, never through a symbolic link.

A link, a FIFO or a device planted where a state, key or lock file should be is refused with
`UnsafeFile` naming it, so the daemon never reads or truncates a victim file through it (writes
go through `write_atomic`, whose rename replaces a link instead of following it). Other
`OSError`s, `FileNotFoundError` first, reach the caller, which knows what a missing file means.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from firmware.store.errors import UnsafeFile

NO_FOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK  # O_NONBLOCK: a planted FIFO never blocks
READ_CHUNK = 1 << 16


def open_own_file(path: Path, flags: int, mode: int = 0o600, *, in_place: bool = False) -> int:
    """A descriptor of regular file `path` opened with `flags` (plus O_NOFOLLOW, O_CLOEXEC).

    `in_place`: the caller will write into the file itself (not replace it), so it must also be
    owned by the daemon's user and have no other hard link.
    """
    try:
        fd = os.open(path, flags | NO_FOLLOW, mode)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise UnsafeFile(
                f"{path} is a symbolic link; refusing to follow it",
                hint=f"remove it (rm {path}); edgekeeper creates its own files",
            ) from None
        raise
    try:
        _check(path, os.fstat(fd), in_place)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_own_file(path: Path) -> bytes:
    """The content of regular file `path`, opened without following a link."""
    fd = open_own_file(path, os.O_RDONLY)
    try:
        chunks = []
        while chunk := os.read(fd, READ_CHUNK):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _check(path: Path, status: os.stat_result, in_place: bool) -> None:
    if not stat.S_ISREG(status.st_mode):
        raise UnsafeFile(
            f"{path} is not a regular file",
            hint=f"remove it (rm {path}); edgekeeper creates its own files",
        )
    if not in_place:
        return
    uid = os.geteuid()
    if status.st_uid != uid:
        raise UnsafeFile(
            f"{path} is owned by uid {status.st_uid}, not by edgekeeper's uid {uid}",
            hint=f"remove it (rm {path}); edgekeeper creates it again",
        )
    if status.st_nlink != 1:
        raise UnsafeFile(
            f"{path} has {status.st_nlink} hard links; writing into it would change the others",
            hint=f"remove it (rm {path}); edgekeeper creates it again",
        )
