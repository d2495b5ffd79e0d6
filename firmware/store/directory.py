"""Directories only the daemon can change: created with safe modes, refused when others could
tamper with them.

`OwnDirectory(path, what, setting, mode).ensure()` creates a missing directory with `mode`
(missing parents 0755), then checks the whole path, as OpenSSH checks `authorized_keys`:

- the directory itself must be owned by the daemon's user and not writable by group or others;
- every parent, and every symbolic link met on the way, must be owned by root or the daemon's
  user: the owner of a parent can rename the directory away and put another in its place, the
  owner of a link can point it elsewhere;
- a parent writable by group or others must be sticky (as /tmp is): without the sticky bit,
  anyone who may write to it may rename the directory away, with it only the directory's owner.

A problem raises `UnsafeDirectory` naming the directory, what is wrong and the command that fixes
it. An unsafe directory is refused, never quietly repaired: someone may already have tampered
with what is in it.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from firmware.store.errors import StateWriteError, UnsafeDirectory

PARENT_MODE = 0o755
MAX_LINKS = 40  # the kernel's own limit on symbolic links in one path walk
OTHERS_WRITE = stat.S_IWGRP | stat.S_IWOTH


@dataclass(frozen=True)
class OwnDirectory:
    """One of the daemon's directories: `what` names it in errors, `setting` is the config key
    that moves it, `mode` the mode it is created with (and the one the fixes name)."""

    path: Path
    what: str
    setting: str
    mode: int

    def ensure(self) -> Path:
        """Create the directory if missing (missing parents 0755) and check it; its absolute path.

        Raises `UnsafeDirectory` when someone other than root and the daemon's user could change
        it, `StateWriteError` when it cannot be created or written.
        """
        path = self.path.absolute()
        existing = _nearest_existing(path)
        if existing != path:  # nothing is created inside a parent someone else could change
            for parent, status in self._walk(existing):
                self._check_parent(parent, status, os.geteuid())
        try:
            _make(path, self.mode)
        except OSError as error:
            raise StateWriteError(
                f"cannot create {self.what} {path}: {error.strerror or error}",
                hint=f"create it owned by uid {os.geteuid()} with mode {self.mode:o}, or set "
                f"{self.setting} elsewhere",
            ) from error
        self.check()
        if not os.access(path, os.W_OK | os.X_OK):
            raise StateWriteError(
                f"{self.what} {path} is not writable",
                hint=f"chmod u+rwx {path}, or set {self.setting} elsewhere",
            )
        return path

    def check(self) -> None:
        """Raise `UnsafeDirectory` unless only root and the daemon's user can change it."""
        path = self.path.absolute()
        uid = os.geteuid()
        *parents, (real, status) = self._walk(path)
        for parent, parent_status in parents:
            self._check_parent(parent, parent_status, uid)
        if not stat.S_ISDIR(status.st_mode):
            raise UnsafeDirectory(
                f"{self.what} {path} is not a directory",
                hint=f"remove it or set {self.setting} elsewhere",
            )
        shown = path if real == path else f"{path} (really {real})"
        if status.st_uid != uid:
            raise UnsafeDirectory(
                f"{self.what} {shown} is owned by uid {status.st_uid}, not by edgekeeper's "
                f"uid {uid}",
                hint=f"chown {uid}:{os.getegid()} {real}, or set {self.setting} elsewhere",
            )
        if status.st_mode & OTHERS_WRITE:
            raise UnsafeDirectory(
                f"{self.what} {shown} is writable by group or others "
                f"(mode {stat.S_IMODE(status.st_mode):04o})",
                hint=f"chmod {self.mode:o} {real}",
            )

    def _walk(self, path: Path) -> list[tuple[Path, os.stat_result]]:
        try:
            return list(_walk(path))
        except OSError as error:
            raise UnsafeDirectory(
                f"{self.what} {self.path.absolute()} cannot be checked: {error.strerror or error}",
                hint=f"make every directory on the way searchable by uid {os.geteuid()}, or set "
                f"{self.setting} elsewhere",
            ) from error

    def _check_parent(self, parent: Path, status: os.stat_result, uid: int) -> None:
        path, what, setting = self.path.absolute(), self.what, self.setting
        if stat.S_ISLNK(status.st_mode):
            if status.st_uid not in (0, uid):
                raise UnsafeDirectory(
                    f"{what} {path} goes through the symbolic link {parent}, owned by uid "
                    f"{status.st_uid}, who can point it elsewhere",
                    hint=f"set {setting} to the link's target, or chown -h 0 {parent}",
                )
            return
        if status.st_uid not in (0, uid):
            raise UnsafeDirectory(
                f"{what} {path} is inside {parent}, owned by uid {status.st_uid}, who can move "
                "it away and put another in its place",
                hint=f"set {setting} under a directory owned by root or uid {uid}, or "
                f"chown 0 {parent}",
            )
        if status.st_mode & OTHERS_WRITE and not status.st_mode & stat.S_ISVTX:
            raise UnsafeDirectory(
                f"{what} {path} is inside {parent}, which is writable by group or others and "
                f"not sticky (mode {stat.S_IMODE(status.st_mode):04o}): they can move it away",
                hint=f"chmod go-w {parent} (or chmod +t {parent}), or set {setting} elsewhere",
            )


def _walk(path: Path) -> Iterator[tuple[Path, os.stat_result]]:
    """Every entry the kernel passes to reach `path` (absolute), each with its `lstat`: `/`,
    each component, each symbolic link and then the components of its target. The last one is
    the directory itself."""
    current = last = Path("/")
    yield current, os.lstat(current)
    pending = list(path.parts[1:])
    links = 0
    while pending:
        part = pending.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            current = current.parent
            continue
        last = entry = current / part
        status = os.lstat(entry)
        yield entry, status
        if stat.S_ISLNK(status.st_mode):
            links += 1
            if links > MAX_LINKS:
                raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), str(path))
            target = Path(os.readlink(entry))
            if target.is_absolute():
                current = Path("/")
            pending[:0] = list(target.parts[1:] if target.is_absolute() else target.parts)
        else:
            current = entry
    if current != last:  # the path ended in ".." or in a link to a directory already seen
        yield current, os.lstat(current)


def _nearest_existing(path: Path) -> Path:
    """`path` or its closest ancestor that exists (a link counts, even a dangling one)."""
    while not os.path.lexists(path):
        path = path.parent
    return path


def _make(path: Path, mode: int) -> None:
    missing = [path, *path.parents][: len(path.parts) - len(_nearest_existing(path).parts)]
    for directory in reversed(missing):
        try:
            os.mkdir(directory, mode if directory == path else PARENT_MODE)
        except FileExistsError:
            continue
