"""The one exception hierarchy: every error a user can see, with its message, hint and HTTP status.

Errors are raised where a problem is detected and rendered once, at the edge (CLI, HTTP, console).
Each package defines its own subclasses of these in its own `errors.py`.
"""

from __future__ import annotations

from firmware.redaction import redact


class EdgekeeperError(Exception):
    """Root of every error edgekeeper reports to a person or a caller.

    `message` says what went wrong and names the thing (file, line, field, device);
    `hint` says what to do about it. `http_status` is used where the error crosses HTTP.
    """

    http_status: int = 500

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def render(self) -> str:
        """One line for a person: the message, then the fix when one is known; a secret written
        inside either (a PIN in a PKCS#11 URI, a connection string's key) is hidden."""
        if self.hint:
            return redact(f"{self.message} ({self.hint})")
        return redact(self.message)


class UsageError(EdgekeeperError):
    """A command line or console line that does not fit the command."""

    http_status = 400


class ConfigError(EdgekeeperError):
    """Configuration or board file that cannot be used; carries every problem found at once."""

    http_status = 400


class DeviceError(EdgekeeperError):
    """A device (console UART, TPM, token, socket) that is missing, unreadable or dead."""

    http_status = 503


class StateError(EdgekeeperError):
    """Persistent state that cannot be read or written (full disk, corrupt file, permissions)."""


class DaemonError(EdgekeeperError):
    """The daemon cannot start or be reached (second instance, no socket, lock held)."""

    http_status = 503


class BadRequest(EdgekeeperError):
    """A caller's request is malformed; the message names the field."""

    http_status = 400


class Forbidden(EdgekeeperError):
    """A caller may not do what it asked."""

    http_status = 403


class NotFound(EdgekeeperError):
    """A named thing (module, key, certificate, path) does not exist."""

    http_status = 404


class Conflict(EdgekeeperError):
    """The request conflicts with current state."""

    http_status = 409


class PayloadTooLarge(EdgekeeperError):
    """A request body or input line is over its bound."""

    http_status = 413


class NotSupported(EdgekeeperError):
    """An operation this build, backend or version does not offer."""

    http_status = 501


class TooManyRequests(EdgekeeperError):
    """A budget is spent; the caller may try again after `retry_after_s` seconds (HTTP sends it
    as Retry-After)."""

    http_status = 429

    def __init__(self, message: str, *, hint: str | None = None, retry_after_s: float = 1.0):
        super().__init__(message, hint=hint)
        self.retry_after_s = retry_after_s


class Unavailable(EdgekeeperError):
    """A backing service (engine, TPM, token) is temporarily unreachable."""

    http_status = 503
