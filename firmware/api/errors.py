"""Errors of the local API layer, and turning an error answer back into the error it renders.

A client (the CLI over the socket, the console in-process) gets `{"message": ...}` with a status;
`error_for_answer` gives the `EdgekeeperError` kind for that status carrying the server's message,
so the edge that finally shows it prints the daemon's words once, unchanged.
"""

from __future__ import annotations

from firmware.errors import (
    BadRequest,
    Conflict,
    DaemonError,
    EdgekeeperError,
    Forbidden,
    NotFound,
    NotSupported,
    PayloadTooLarge,
    Unavailable,
)

_BY_STATUS: dict[int, type[EdgekeeperError]] = {
    400: BadRequest,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    501: NotSupported,
    503: Unavailable,
}


class DaemonUnreachable(DaemonError):
    """The daemon's socket is missing, refuses us, or the daemon does not answer in time."""


class ApiAnswerError(EdgekeeperError):
    """An error answer whose status has no kind of its own; keeps the status it came with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.http_status = status


def error_for_answer(status: int, body: object) -> EdgekeeperError:
    """The error an answer with `status` (>= 400) and decoded JSON `body` stands for."""
    message = body.get("message") if isinstance(body, dict) else None
    if not isinstance(message, str) or not message:
        message = f"the daemon answered HTTP {status} without a message"
    kind = _BY_STATUS.get(status)
    if kind is None:
        return ApiAnswerError(status, message)
    return kind(message)
