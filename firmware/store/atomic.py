"""Atomic file replacement: a reader or a power cut sees the old content or the new, never a mix.

The new content goes to a temporary file in the same directory, is flushed to disk, gets its
mode, and is renamed over the target; the directory is then flushed so the rename itself is
durable. On any failure the temporary file is removed and the old file is left as it was.
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
    directory = path.parent
    temp = None
    try:
        fd, temp = _create_temp(path)
        try:
            _write_all(fd, data)
            os.fchmod(fd, mode)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(temp, path)
        temp = None
        fsync_dir(directory)
    except OSError as exc:
        raise _write_error(path, exc) from exc
    finally:
        if temp is not None:
            _remove_quietly(temp)


def fsync_dir(directory: Path) -> None:
    """Flush a directory's entries (a rename or unlink in it) to disk."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _create_temp(path: Path) -> tuple[int, str]:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    prefix = temp_prefix(path)
    for attempt in range(100):
        name = path.parent / f"{prefix}{os.getpid()}.{attempt}{TEMP_SUFFIX}"
        try:
            return os.open(name, flags, 0o600), str(name)
        except FileExistsError:
            continue
    raise OSError(errno.EEXIST, "no free temporary file name", str(path.parent))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _remove_quietly(name: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(name)


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
