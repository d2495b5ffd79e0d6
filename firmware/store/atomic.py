"""Atomic file replacement: a reader or a power cut sees the old content or the new, never a mix.

The new content goes to a temporary file in the same directory, is flushed to disk, gets its
mode, and is renamed over the target; the directory is then flushed so the rename itself is
durable. On any failure the temporary file is removed and the old file is left as it was.

Every step works on one descriptor of the directory (`dir_fd=`), so the temporary file, the rename
and the flush all happen in the same directory even if its path changes meanwhile. The temporary
file is created with O_CREAT|O_EXCL|O_NOFOLLOW (never through something planted under its name),
and the rename replaces whatever holds the target's name, a planted symbolic link included,
without following it.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

from firmware.store.errors import StateWriteError

TEMP_SUFFIX = ".tmp"


def temp_prefix(path: Path) -> str:
    """The name prefix of the temporary files `write_atomic` makes for `path`."""
    return f".{path.name}."


def write_atomic(path: Path | str, data: bytes, mode: int = 0o600) -> None:
    """Replace `path` with `data` atomically and durably; raise `StateWriteError` on failure."""
    path = Path(path)
    try:
        dir_fd = _open_dir(path.parent)
        try:
            _replace(dir_fd, path.name, data, mode)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        raise _write_error(path, exc) from exc


def fsync_dir(directory: Path) -> None:
    """Flush a directory's entries (a rename or unlink in it) to disk."""
    fd = _open_dir(directory)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _open_dir(directory: Path) -> int:
    return os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


def _replace(dir_fd: int, name: str, data: bytes, mode: int) -> None:
    fd, temp = _create_temp(dir_fd, name)
    try:
        try:
            _write_all(fd, data)
            os.fchmod(fd, mode)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp, dir_fd=dir_fd)
        raise
    os.fsync(dir_fd)


def _create_temp(dir_fd: int, name: str) -> tuple[int, str]:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    prefix = temp_prefix(Path(name))
    for attempt in range(100):
        temp = f"{prefix}{os.getpid()}.{attempt}{TEMP_SUFFIX}"
        try:
            return os.open(temp, flags, 0o600, dir_fd=dir_fd), temp
        except FileExistsError:
            continue
    raise OSError(errno.EEXIST, "no free temporary file name")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _write_error(path: Path, exc: OSError) -> StateWriteError:
    directory = path.parent
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        hint = f"free space on the filesystem holding {directory}; the previous content is kept"
        return StateWriteError(f"cannot write {path}: disk full", hint=hint)
    if exc.errno in (errno.EACCES, errno.EPERM):
        hint = f"make {directory} writable by uid {os.geteuid()}, or point [paths] elsewhere"
        return StateWriteError(f"cannot write {path}: permission denied", hint=hint)
    if exc.errno == errno.EROFS:
        hint = f"mount the filesystem holding {directory} read-write, or point [paths] elsewhere"
        return StateWriteError(f"cannot write {path}: read-only filesystem", hint=hint)
    if exc.errno == errno.ENOENT:
        hint = f"create {directory} or fix [paths] in the config"
        return StateWriteError(f"cannot write {path}: directory {directory} missing", hint=hint)
    return StateWriteError(f"cannot write {path}: {reason}", hint="check the disk and the path")
