"""The request and response values that cross the local APIs, on a socket or in-process.

A request is what arrived (method, percent-encoded path, query, lower-case headers, body, the
listener it came in on and the caller's peer credentials); a response is what a handler answers.
Neither knows about sockets: the HTTP server builds requests from bytes, the console and tests build
them by hand, and both hand them to the same `Router.dispatch`.

A body is read as JSON within bounds a client cannot push the parser past
(`firmware.json_text`): whatever a client sends, `json()` returns a document or raises
`BadRequest`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field

from firmware.errors import BadRequest
from firmware.json_text import read_json

JSON_TYPE = "application/json"


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
        return read_json(self.body, "request body")

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
