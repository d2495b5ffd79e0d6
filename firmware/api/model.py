"""The request and response values that cross the local APIs, on a socket or in-process.

A request is what arrived (method, percent-encoded path, query, lower-case headers, body, the
listener it came in on and the caller's peer credentials); a response is what a handler answers.
Neither knows about sockets: the HTTP server builds requests from bytes, the console and tests build
them by hand, and both hand them to the same `Router.dispatch`.

A body is read as JSON only within bounds a client cannot push the parser past: nesting at most
`MAX_JSON_DEPTH` deep (checked on the bytes before parsing), integers of at most
`MAX_INTEGER_DIGITS` digits, no NaN or Infinity. Whatever a client sends, `json()` returns a
document or raises `BadRequest`.
"""

from __future__ import annotations

import json
import re
from array import array
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from itertools import accumulate

from firmware.errors import BadRequest

JSON_TYPE = "application/json"
MAX_JSON_DEPTH = 64
MAX_INTEGER_DIGITS = 40

# A JSON string (its closing quote optional, so an unterminated one is consumed in one pass).
_STRING = re.compile(rb'"[^"\\]*(?:\\[\s\S][^"\\]*)*"?')
# Opening brackets become +1 and closing ones -1 (as signed bytes); every other byte is dropped.
_DEPTH_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[{]}")))


@dataclass(frozen=True)
class PeerCredentials:
    """Who is on the other end of a unix socket, as the kernel reports it (SO_PEERCRED).

    `pidfd` pins the process that connected (a pidfd from SO_PEERPIDFD, or opened at accept):
    while it shows the process running, `pid` still names that process and no other. It belongs
    to the connection, which closes it when it ends; None when the kernel offers none.
    """

    pid: int
    uid: int
    gid: int
    pidfd: int | None = None


@dataclass(frozen=True)
class ApiRequest:
    """One request to a local API.

    `path` is as on the wire (percent-encoded, without the query string); the router splits and
    decodes it. `listener` names the socket it arrived on: "mgmt", "console", "workload", or a
    kind with a scope after a colon, such as "workload:tempSensor" for a module's own socket.
    """

    method: str
    path: str
    query: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    peer: PeerCredentials | None = None
    listener: str = "mgmt"

    @property
    def listener_kind(self) -> str:
        """The listener without its scope: "workload" for "workload:tempSensor"."""
        return self.listener.partition(":")[0]

    @property
    def listener_scope(self) -> str | None:
        """The scope after the colon ("tempSensor" for "workload:tempSensor"), if any."""
        _kind, colon, scope = self.listener.partition(":")
        return scope if colon else None

    def json(self) -> object:
        """The body parsed as JSON; `BadRequest` saying what is wrong with it otherwise."""
        if not self.body:
            raise BadRequest(
                "request body is empty",
                hint="send a JSON document with Content-Type: application/json",
            )
        try:
            text = self.body.decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest(
                "request body is not UTF-8 text", hint="send a JSON document"
            ) from None
        # On UTF-8 bytes the scan is exact: no multi-byte character holds a bracket or a quote.
        if _nested_deeper_than(self.body, MAX_JSON_DEPTH):
            raise _too_deep()
        try:
            return json.loads(text, parse_int=_bounded_int, parse_constant=_no_constant)
        except json.JSONDecodeError as error:
            raise BadRequest(
                f"request body is not valid JSON: {error.msg} at line {error.lineno} "
                f"column {error.colno}",
                hint="send a JSON document",
            ) from None
        except _NumberRefused as error:
            raise BadRequest(f"request body is not valid JSON: {error}", hint=error.hint) from None
        except ValueError:
            raise BadRequest(
                "request body is not valid JSON: a number in it cannot be read",
                hint=f"send integers of at most {MAX_INTEGER_DIGITS} digits",
            ) from None
        except RecursionError:
            # A backstop: the scan above lets no body this deep reach the parser.
            raise _too_deep() from None

    def json_object(self) -> dict[str, object]:
        """The body as a JSON object (the shape every endpoint takes); `BadRequest` otherwise."""
        document = self.json()
        if not isinstance(document, dict):
            raise BadRequest(
                f"request body must be a JSON object, not {_json_kind(document)}",
                hint='send {"field": value, ...}',
            )
        return document


@dataclass(frozen=True)
class ApiResponse:
    """A handler's answer.

    `body` is JSON-encoded unless it is `bytes` (sent as is, with the content type from
    `headers` or application/octet-stream); `None` means no body. A response with a `stream`
    sends its chunks with chunked transfer encoding as they come (for `logs?follow=true`).
    """

    status: int = 200
    body: object = None
    headers: tuple[tuple[str, str], ...] = ()
    stream: AsyncIterator[bytes] | None = None

    @classmethod
    def error(
        cls, status: int, message: str, headers: tuple[tuple[str, str], ...] = ()
    ) -> ApiResponse:
        """An error answer in the shape IoT Edge uses: `{"message": ...}`."""
        return cls(status=status, body={"message": message}, headers=headers)

    def encoded_body(self) -> bytes:
        if self.body is None:
            return b""
        if isinstance(self.body, bytes):
            return self.body
        return json.dumps(self.body, separators=(",", ":")).encode()

    def content_type(self) -> str | None:
        for name, value in self.headers:
            if name.lower() == "content-type":
                return value
        if self.body is None and self.stream is None:
            return None
        if isinstance(self.body, bytes) or self.stream is not None:
            return "application/octet-stream"
        return JSON_TYPE

    def json(self) -> object:
        """The body as a caller on the socket would decode it (None when there is none)."""
        encoded = self.encoded_body()
        return json.loads(encoded) if encoded else None


class _NumberRefused(ValueError):
    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.hint = hint


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INTEGER_DIGITS:
        raise _NumberRefused(
            f"an integer has {len(text.lstrip('-'))} digits",
            hint=f"send integers of at most {MAX_INTEGER_DIGITS} digits",
        )
    return int(text)


def _no_constant(name: str) -> object:
    raise _NumberRefused(f"{name} is not a JSON number", hint="send finite numbers")


def _too_deep() -> BadRequest:
    return BadRequest(
        f"request body is nested more than {MAX_JSON_DEPTH} levels deep",
        hint="send a flatter JSON document",
    )


def _nested_deeper_than(body: bytes, limit: int) -> bool:
    """True if the arrays and objects of a JSON text nest more than `limit` deep.

    Cheap on every body: with no more than `limit` brackets it cannot; otherwise, with the strings
    dropped, each bracket becomes a step of +1 or -1 and the highest running sum is the depth
    (all in C: one regex pass, one translate, one accumulate). An unbalanced text is left to the
    parser to name.
    """
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    steps = array("b", _STRING.sub(b"", body).translate(_DEPTH_STEPS, _NOT_BRACKETS))
    return max(accumulate(steps), default=0) > limit


def _json_kind(value: object) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return "a number"
