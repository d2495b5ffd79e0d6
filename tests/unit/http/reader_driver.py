"""Test driver for `RequestReader`: plays a client's bytes against it on a made-up clock, in memory,
answering every request as a server would, and records what the reader said."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from firmware.http.reader import (
    Closed,
    HttpRequest,
    Interim,
    NeedData,
    ReaderEvent,
    Refusal,
    RequestLimits,
    RequestReader,
)

SMALL = RequestLimits(
    max_body_bytes=2048,
    max_header_bytes=2048,
    request_timeout_s=2.0,
    idle_timeout_s=5.0,
    max_query_fields=8,
)


@dataclass
class Session:
    """What the reader said over one connection."""

    events: list[ReaderEvent] = field(default_factory=list)

    @property
    def requests(self) -> list[HttpRequest]:
        return [event for event in self.events if isinstance(event, HttpRequest)]

    @property
    def end(self) -> ReaderEvent:
        return self.events[-1]


def play(
    pieces: Sequence[tuple[float, bytes]],
    *,
    limits: RequestLimits = SMALL,
    close: bool = True,
    then: float | None = None,
) -> Session:
    """Feed `(time, bytes)` pieces in order, asking the reader for events between them; answer
    each request with 200. With `close`, the client closes after the last piece; `then` is a
    time at which the reader is asked once more (to let a deadline pass)."""
    reader = RequestReader(limits)
    session = Session()
    now = 0.0

    def drain() -> bool:
        """Ask until the reader waits for data; False once the connection is over."""
        while True:
            event = reader.next_event(now)
            session.events.append(event)
            if isinstance(event, HttpRequest):
                reader.answer(200, [("content-type", "text/plain")], b"ok")
            elif isinstance(event, (Refusal, Closed)):
                return False
            elif isinstance(event, NeedData):
                return True
            else:
                assert isinstance(event, Interim)

    if not drain():
        return session
    for at, data in pieces:
        now = max(now, at)
        reader.feed(data, now)
        if not drain():
            return session
    if then is not None:
        now = max(now, then)
        if not drain():
            return session
    if close:
        reader.feed(b"", now)
        drain()
    return session


def request_bytes(method: str, target: str, body: bytes = b"", extra: str = "") -> bytes:
    head = f"{method} {target} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    return head.encode() + body
