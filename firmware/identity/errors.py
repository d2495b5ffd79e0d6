"""Errors of the identity service (module identities)."""

from __future__ import annotations

from firmware.errors import BadRequest, Conflict, NotFound


class IdentityNotFound(NotFound):
    """No module identity with that id (or not with that generation id)."""


class IdentityExists(Conflict):
    """A module identity with that id exists already."""


class InvalidModuleId(BadRequest):
    """A module id that cannot name an identity (or a socket file)."""


class InvalidSealedData(BadRequest):
    """A ciphertext given to decrypt that cannot be what encrypt returned."""
