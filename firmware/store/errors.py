"""Errors of the state store: a file that cannot be written, read or parsed, and files or
directories someone else could have planted or changed."""

from __future__ import annotations

from firmware.errors import BadRequest, StateError


class StateWriteError(StateError):
    """A state file could not be written (full disk, permissions, read-only filesystem)."""


class StateReadError(StateError):
    """A state file exists but cannot be read."""


class CorruptState(StateError):
    """A state file exists but does not hold a valid document; it is left untouched."""


class InvalidStateName(BadRequest):
    """A state document name with characters or a length the store refuses."""


class UnsafeDirectory(StateError):
    """A directory of the daemon's that someone other than root or the daemon's user could change
    (its mode, its owner, a parent's or a link's on the way)."""


class UnsafeFile(StateError):
    """A state, key or lock file that is a symbolic link, not a regular file, or not the daemon's:
    something planted in its place; it is refused, never followed."""
