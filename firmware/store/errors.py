"""Errors of the state store: a file that cannot be written, read or parsed."""

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
