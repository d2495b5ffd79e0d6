"""The one error of the HTTP client: an exchange that did not complete, and what went wrong where.

`ExchangeFailed` is an `Unavailable` (the service behind the socket cannot be used right now); it
carries the `Failure` kind and the `Phase` it happened in, so that a caller (the CLI's API client,
the engine client) can turn it into its own message without parsing text.
"""

from __future__ import annotations

import enum

from firmware.errors import Unavailable


class Failure(enum.Enum):
    """What went wrong."""

    MISSING = "does not exist"
    REFUSED = "refused the connection"
    DENIED = "may not be used (permission denied)"
    UNREACHABLE = "cannot be reached"
    TLS = "failed the TLS handshake"
    CONNECT_TIMEOUT = "did not accept a connection in time"
    READ_TIMEOUT = "went silent"
    OVERALL_TIMEOUT = "did not finish the exchange in time"
    CLOSED = "closed the connection early"
    MALFORMED = "sent a malformed answer"
    TOO_LARGE = "sent an answer over the size limit"

    @property
    def timed_out(self) -> bool:
        return self in (Failure.CONNECT_TIMEOUT, Failure.READ_TIMEOUT, Failure.OVERALL_TIMEOUT)


class Phase(enum.Enum):
    """Where in the exchange it went wrong."""

    CONNECT = "connecting"
    SEND = "sending the request"
    HEAD = "waiting for the answer"
    BODY = "reading the answer's body"


class ExchangeFailed(Unavailable):
    """An HTTP request that got no complete answer: the server is missing, refused, went silent
    past a deadline, closed early or broke the protocol.

    `endpoint` names the server ("unix:///run/docker.sock", "https://hub.example:443"),
    `limit` is the deadline that passed (timeouts, in seconds) or the size bound (`TOO_LARGE`, in
    bytes), `detail` what the system or the HTTP parser said.
    """

    def __init__(
        self,
        endpoint: str,
        failure: Failure,
        phase: Phase,
        *,
        limit: float | None = None,
        detail: str = "",
    ) -> None:
        text = f"{endpoint} {failure.value} while {phase.value}"
        if limit is not None:
            text += f" ({limit:g} bytes)" if failure is Failure.TOO_LARGE else f" ({limit:g} s)"
        if detail:
            text += f": {detail}"
        super().__init__(text)
        self.endpoint = endpoint
        self.failure = failure
        self.phase = phase
        self.limit = limit
        self.detail = detail
