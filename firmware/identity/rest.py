"""What the device's REST calls to DPS and the hub share: the request as a value, and reading
an answer (its JSON body, the server's error code and message, its Retry-After advice).

Pure; `firmware.identity.dps` and `firmware.identity.hub` build on it, `firmware.identity.cloud`
sends the requests.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from firmware.errors import BadRequest
from firmware.identity.errors import CloudAnswerMalformed, CloudUnreachable
from firmware.json_text import read_json

#: Retry-After advice is kept within these bounds, in seconds (the Azure IoT C SDK's).
RETRY_AFTER_BOUNDS_S = (1, 300)
#: At most this much of what a server says goes into an error message.
_SAYS_CHARS = 200


@dataclass(frozen=True)
class CloudRequest:
    """One request to DPS or the hub; `target` is the path and query, already encoded."""

    method: str
    target: str
    headers: tuple[tuple[str, str], ...]
    body: bytes | None


def json_request(
    method: str, target: str, document: object | None, authorization: str | None, **extra: str
) -> CloudRequest:
    """A request with `document` as its JSON body (none when None), `Authorization` when given
    and any `extra` headers (names with '_' for '-')."""
    headers = [("accept", "application/json")]
    body = None
    if document is not None:
        headers.append(("content-type", "application/json; charset=utf-8"))
        body = json.dumps(document, separators=(",", ":")).encode()
    if authorization is not None:
        headers.append(("authorization", authorization))
    headers += [(name.replace("_", "-"), value) for name, value in extra.items()]
    return CloudRequest(method, target, tuple(headers), body)


def is_transient(status: int) -> bool:
    """Whether an answer's status says "try again later": 408, 429 and every 5xx."""
    return status in (408, 429) or 500 <= status <= 599


def retry_after_s(headers: Mapping[str, str]) -> float | None:
    """The server's Retry-After as seconds within `RETRY_AFTER_BOUNDS_S`; None when absent or
    not an integer (an HTTP date is not read: it would need a trustworthy clock, and the cloud
    services send seconds)."""
    text = headers.get("retry-after", "").strip()
    if not text.isascii() or not text.isdigit() or len(text) > 10:
        return None
    low, high = RETRY_AFTER_BOUNDS_S
    return float(min(max(int(text), low), high))


def read_document(body: bytes, what: str) -> object:
    """`body` parsed as bounded JSON; `CloudAnswerMalformed` naming `what` otherwise."""
    try:
        return read_json(body, what)
    except BadRequest as error:
        raise CloudAnswerMalformed(error.message, hint=_MALFORMED_HINT) from None


_MALFORMED_HINT = (
    "a proxy or captive portal may be answering instead of the service; it is tried again later"
)


def malformed(what: str) -> CloudAnswerMalformed:
    """The error for an answer that is not the protocol; `what` says what is wrong with it."""
    return CloudAnswerMalformed(what, hint=_MALFORMED_HINT)


def server_says(headers: Mapping[str, str], body: bytes) -> str:
    """What the server said about a failure, for an error message: its error code and message
    (DPS `errorCode`/`message`, the hub's `Message`/`ExceptionMessage`, the `x-ms-error-code`
    header), printable and bounded; "" when it said nothing readable. Never raises."""
    said: list[str] = []
    try:
        document = read_json(body, "answer") if body else None
    except BadRequest:
        document = None
    if isinstance(document, dict):
        for name in ("errorCode", "message", "Message", "errorMessage", "ExceptionMessage"):
            value = document.get(name)
            if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
                said.append(f"{name} {value}")
    code = headers.get("x-ms-error-code")
    if code and not any(code in part for part in said):
        said.append(f"x-ms-error-code {code}")
    return printable("; ".join(said), _SAYS_CHARS)


def printable(text: str, limit: int) -> str:
    """`text` from a server made fit for an error message: unprintable characters as '?', at
    most `limit` characters."""
    text = "".join(ch if ch.isprintable() else "?" for ch in text)
    return text if len(text) <= limit else text[:limit] + "..."


def shown(value: object) -> str:
    """A JSON value from a server, quoted for an error message, short and printable."""
    return printable(repr(value), 80)


def unreachable(
    what: str, status: int, headers: Mapping[str, str], body: bytes
) -> CloudUnreachable:
    """The error for a transient answer (`is_transient`), carrying its Retry-After advice."""
    advice = retry_after_s(headers)
    said = server_says(headers, body)
    message = f"{what} answered {status}" + (f" ({said})" if said else "")
    hint = "the service is busy or failing; it is tried again later"
    if advice is not None:
        hint += f" (the service asked for {advice:g} s)"
    return CloudUnreachable(message, hint=hint, retry_after_s=advice)
