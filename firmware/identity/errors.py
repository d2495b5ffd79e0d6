"""Errors of the identity service: module identities, and provisioning against DPS and the hub."""

from __future__ import annotations

from firmware.errors import BadRequest, Conflict, EdgekeeperError, NotFound, Unavailable


class IdentityNotFound(NotFound):
    """No module identity with that id (or not with that generation id)."""


class IdentityExists(Conflict):
    """A module identity with that id exists already."""


class InvalidModuleId(BadRequest):
    """A module id that cannot name an identity (or a socket file)."""


class InvalidSealedData(BadRequest):
    """A ciphertext given to decrypt that cannot be what encrypt returned."""


class CloudUnauthorized(EdgekeeperError):
    """DPS or the hub refused the device's credentials (401, 403, a disabled device or
    enrollment). The one cloud answer that makes the daemon provision again."""

    http_status = 502


class CloudUnreachable(Unavailable):
    """DPS or the hub could not be reached or answered with a transient failure (network error,
    timeout, TLS failure, 429, 5xx) even after the bounded retries. Never a reason to provision
    again: the daemon goes on with what it has cached. `retry_after_s` is the server's advice,
    when it gave one."""

    def __init__(
        self, message: str, *, hint: str | None = None, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.retry_after_s = retry_after_s


class CloudAnswerMalformed(Unavailable):
    """DPS or the hub answered something that is not the protocol (bad JSON, missing fields,
    an unexpected status). Handled like `CloudUnreachable`: retried later, nothing cached lost."""


class ProvisioningRejected(EdgekeeperError):
    """DPS finished the registration without assigning the device (status failed, disabled or
    unassigned): the enrollment needs fixing, not a retry soon."""

    http_status = 502


class NotProvisioned(Unavailable):
    """The device has no identity yet (no cache, and provisioning has not succeeded)."""
