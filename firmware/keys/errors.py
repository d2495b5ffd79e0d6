"""Errors of the key service and its backends."""

from __future__ import annotations

from firmware.errors import BadRequest, Conflict, DeviceError, EdgekeeperError, Forbidden, NotFound


class KeyNotFound(NotFound):
    """No key with that id in its backend."""


class KeyKindMismatch(Conflict):
    """A key exists under that id but is of another kind than asked for."""


class InvalidKeyName(BadRequest):
    """A key name with characters, length or shape the service refuses."""


class InvalidKeyHandle(Forbidden):
    """A handle that was tampered with, truncated, or made for another key."""


class KeyBackendUnavailable(DeviceError):
    """The backend's device or library is missing, locked or refuses us (names device and fix)."""


class KeyOperationFailed(EdgekeeperError):
    """An operation the backend attempted and failed (e.g. a GCM tag that does not verify)."""

    http_status = 400


class InvalidDerivationLabel(BadRequest):
    """A derivation label that is empty, too long or not bytes."""


class ReservedKey(Forbidden):
    """A key the service keeps for itself (the handle-validation key); callers may not touch it."""
