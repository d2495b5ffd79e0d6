"""The server side of one HTTP/1.1 connection without I/O: bytes and a clock in, requests out.

`RequestReader` wraps an h11 server connection and enforces the request bounds (`RequestLimits`):
head size, body size, time from a request's first byte to its last (slow clients), idle time
between requests, number of query fields. The socket server feeds it what arrives with
`feed(data, now)` and asks `next_event(now)`, which says one of:

- `HttpRequest`: a complete request; answer it with `answer` or `start_answer`/`answer_chunk`/
  `end_answer` before asking again;
- `Refusal`: the client broke the protocol or a bound; answer the status (with `answer(...,
  close=True)` where `can_answer`) and close;
- `NeedData`: wait for bytes until `until` (same clock as `now`), then ask again;
- `Interim`: write these bytes (100 Continue), then ask again;
- `Closed`: nothing more will come (the peer closed, the connection idled out, or the last answer
  ended it): close.

Whatever bytes arrive at whatever times, `next_event` only ever gives one of these.

The common request (HTTP/1.1, a Host, a Content-Length body or none, no Expect, Connection,
Transfer-Encoding or Upgrade, arriving whole or with its body to come) is read and answered here
directly, with h11's grammar, and h11 never sees it: that is most of a request's cost on the
workload API. Anything else, and any answer h11 frames differently (1xx, 204, 304, streams), goes
through h11, which is given the request's bytes first where it has not seen them; what the client
sees is the same either way.

Every status line carries its reason phrase ("HTTP/1.1 204 No Content"): IoT Edge's .NET unix-socket
client (edgeAgent, edgeHub) rejects a status line of fewer than three parts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import parse_qsl

import h11

# h11's grammar (h11/_abnf.py): a request line of HTTP/1.1 only, and a header field.
_TOKEN = rb"[-!#$%&'*+.^_`|~0-9a-zA-Z]+"
_REQUEST_LINE = re.compile(rb"(" + _TOKEN + rb") ([\x21-\x7e]+) HTTP/1\.1")
_HEADER_FIELD = re.compile(
    rb"(" + _TOKEN + rb"):[ \t]*((?:[^\x00\s]+(?:[ \t]+[^\x00\s]+)*)?)[ \t]*"
)
_FIELD_NAME = re.compile(_TOKEN)
_FIELD_VALUE = re.compile(rb"(?:[^\x00\s]+(?:[ \t]+[^\x00\s]+)*)?")
# Methods whose answers h11 frames like any other (not HEAD, not CONNECT).
_DIRECT_METHODS = frozenset((b"GET", b"POST", b"PUT", b"DELETE", b"PATCH", b"OPTIONS"))
# Request headers that change how h11 frames or follows a request: those requests go through it.
_H11_REQUEST_HEADERS = frozenset((b"transfer-encoding", b"expect", b"connection", b"upgrade"))
# Answer headers h11 rewrites or places itself.
_H11_ANSWER_HEADERS = frozenset(("content-length", "transfer-encoding", "connection", "host"))
_REASONS: dict[int, bytes] = {}


def reason_phrase(status: int) -> bytes:
    """The status's standard reason phrase ("Not Found"), or "Unknown" for a code it has none."""
    phrase = _REASONS.get(status)
    if phrase is None:
        try:
            phrase = HTTPStatus(status).phrase.encode("ascii")
        except ValueError:
            phrase = b"Unknown"
        if len(_REASONS) < 128:  # the statuses a server answers with are few
            _REASONS[status] = phrase
    return phrase


@dataclass(frozen=True)
class RequestLimits:
    """Bounds on what a client may send."""

    max_body_bytes: int = 1024 * 1024
    max_header_bytes: int = 16 * 1024
    request_timeout_s: float = 10.0  # from a request's first byte to its last
    idle_timeout_s: float = 60.0  # keep-alive wait for the next request
    max_query_fields: int = 64


@dataclass(frozen=True)
class HttpRequest:
    """A complete request: `path` percent-encoded as sent, `query` decoded, header names in lower
    case (repeats joined by ", ")."""

    method: str
    path: str
    query: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""


@dataclass(frozen=True)
class Refusal:
    """Answer `status` with `message`, then close."""

    status: int
    message: str


@dataclass(frozen=True)
class NeedData:
    """Feed more bytes; if none come before `until`, ask again anyway."""

    until: float


@dataclass(frozen=True)
class Interim:
    """Send `data` (an interim answer), then ask again."""

    data: bytes


@dataclass(frozen=True)
class Closed:
    """The connection is over; `reason` is for the log."""

    reason: str


ReaderEvent = HttpRequest | Refusal | NeedData | Interim | Closed


class RequestReader:
    """Requests from one client connection, and the framing of the answers to them."""

    def __init__(self, limits: RequestLimits) -> None:
        self._limits = limits
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=limits.max_header_bytes)
        self._waiting_since: float | None = None  # when this request cycle began
        self._first_byte_at: float | None = None  # when this request's first byte came
        self._last_byte_at: float | None = None  # when the latest bytes came
        self._head: h11.Request | None = None
        self._body = bytearray()
        self._answer_due = False
        self._ended = False
        # Read directly (not by h11) between requests: what came is in `_pending`, and `_raw`
        # holds the bytes of a request read directly until it is answered.
        self._direct = True
        self._pending = bytearray()
        self._raw: bytes | None = None
        self._closing = False  # a direct answer said "Connection: close"

    @property
    def can_answer(self) -> bool:
        """True while an answer (a refusal included) may still be sent."""
        if self._raw is not None:
            return True
        answered_directly = self._answer_due and self._h11.our_state is h11.IDLE
        if self._closing or answered_directly:
            return False
        return self._h11.our_state in (h11.IDLE, h11.SEND_RESPONSE)

    def feed(self, data: bytes, now: float) -> None:
        """Bytes from the client; b"" when it has closed its sending side."""
        if self._ended or self._h11.trailing_data[1]:  # over, or the client closed already
            return
        self._start_cycle(now)
        if data:
            self._last_byte_at = now
            if self._first_byte_at is None:
                self._first_byte_at = now
            if self._direct:
                self._pending += data
                return
        elif self._direct:
            self._to_h11()  # h11 says what a close at this point means
        self._h11.receive_data(data)

    def next_event(self, now: float) -> ReaderEvent:
        """What the server should do next (see the module docstring)."""
        if self._ended:
            return Closed("connection ended")
        if self._answer_due:
            direct = self._h11.our_state is h11.IDLE
            if self._raw is not None or not (
                direct or self._h11.our_state in (h11.DONE, h11.MUST_CLOSE, h11.CLOSED)
            ):
                raise RuntimeError("answer the request before reading the next one")
            self._answer_due = False
            if self._closing or self._h11.our_state in (h11.MUST_CLOSE, h11.CLOSED):
                return self._end(Closed("answered; the connection closes"))
            if not direct:  # answered through h11, and the connection stays open
                self._h11.start_next_cycle()
                self._direct = self._h11.trailing_data == (b"", False)
            self._waiting_since = self._first_byte_at = self._last_byte_at = None
            self._head, self._body = None, bytearray()
        self._start_cycle(now)
        if self._direct:
            if not self._pending:
                return self._wait(now)
            found = self._direct_request()
            if found is not None:
                return found if not isinstance(found, NeedData) else self._wait(now)
            self._to_h11()
        while True:
            try:
                event = self._h11.next_event()
            except h11.RemoteProtocolError as error:
                return self._end(
                    Refusal(error.error_status_hint, f"malformed HTTP request: {error}")
                )
            if event is h11.NEED_DATA:
                return self._wait(now)
            if isinstance(event, h11.Request):
                verdict = self._accept_head(event)
                if verdict is not None:
                    return verdict
            elif isinstance(event, h11.Data):
                self._body += event.data
                if len(self._body) > self._limits.max_body_bytes:
                    return self._end(Refusal(413, self._too_large()))
            elif isinstance(event, h11.EndOfMessage):
                if self._late():
                    return self._end(Refusal(408, "request not received in time"))
                head = self._head
                assert head is not None
                return self._request(head.method, head.target, head.headers)
            else:  # ConnectionClosed, or PAUSED after the client closed mid-cycle
                return self._end(Closed("the client closed the connection"))

    # --- answers -------------------------------------------------------------------------

    def answer(
        self, status: int, headers: Sequence[tuple[str, str]], body: bytes, *, close: bool = False
    ) -> bytes:
        """A whole answer with its Content-Length (and "Connection: close" with `close`)."""
        fields = [*headers, ("content-length", str(len(body)))]
        if close:
            fields.append(("connection", "close"))
        if self._raw is not None:
            direct = _direct_answer(status, headers, fields, body)
            if direct is not None:
                self._raw = None
                self._closing = close
                return direct
            self._sync_h11()
        events: list[h11.Event] = [
            h11.Response(status_code=status, headers=fields, reason=reason_phrase(status))
        ]
        if body:
            events.append(h11.Data(data=body))
        events.append(h11.EndOfMessage())
        return b"".join(self._h11.send(event) or b"" for event in events)

    def start_answer(self, status: int, headers: Sequence[tuple[str, str]]) -> bytes:
        """The head of an answer whose body follows in chunks; the connection ends with it."""
        self._sync_h11()
        fields = [*headers, ("connection", "close")]
        response = h11.Response(status_code=status, headers=fields, reason=reason_phrase(status))
        return self._h11.send(response) or b""

    def answer_chunk(self, data: bytes) -> bytes:
        return self._h11.send(h11.Data(data=data)) or b""

    def end_answer(self) -> bytes:
        return self._h11.send(h11.EndOfMessage()) or b""

    # --- reading -------------------------------------------------------------------------

    def _start_cycle(self, now: float) -> None:
        if self._waiting_since is not None:
            return
        self._waiting_since = now
        if self._pending or self._h11.trailing_data[0]:  # a pipelined request had arrived
            self._first_byte_at = now

    def _wait(self, now: float) -> ReaderEvent:
        assert self._waiting_since is not None
        if self._first_byte_at is None:
            until = self._waiting_since + self._limits.idle_timeout_s
            if now >= until:
                return self._end(Closed("idle"))
        else:
            until = self._first_byte_at + self._limits.request_timeout_s
            if now >= until:
                return self._end(Refusal(408, "request not received in time"))
        return NeedData(until)

    def _late(self) -> bool:
        """True if the request's last byte came after its time was up."""
        first, last = self._first_byte_at, self._last_byte_at
        return (
            first is not None
            and last is not None
            and last >= first + self._limits.request_timeout_s
        )

    def _direct_request(self) -> ReaderEvent | None:
        """The request at the start of `_pending` if it is a common one (see the module
        docstring): the request (or its refusal), `NeedData` while its body is still to come,
        or None for h11 to read it."""
        data = self._pending
        end = data.find(b"\r\n\r\n")
        if end < 0 or end + 4 > self._limits.max_header_bytes:
            return None
        lines = bytes(data[:end]).split(b"\r\n")
        line = _REQUEST_LINE.fullmatch(lines[0])
        if line is None or line[1] not in _DIRECT_METHODS:
            return None
        headers: list[tuple[bytes, bytes]] = []
        length = -1
        hosts = 0
        for text in lines[1:]:
            header = _HEADER_FIELD.fullmatch(text)
            if header is None:
                return None
            name, value = header[1].lower(), header[2]
            if name in _H11_REQUEST_HEADERS:
                return None
            if name == b"content-length":
                if length >= 0 or not value.isdigit():
                    return None
                length = int(value)
            elif name == b"host":
                hosts += 1
            headers.append((name, value))
        length = max(length, 0)
        if hosts != 1 or length > self._limits.max_body_bytes:
            return None
        size = end + 4 + length
        if len(data) < size:
            return NeedData(0.0)
        self._raw = bytes(data[:size])
        self._body = bytearray(data[end + 4 : size])
        del data[:size]
        if self._late():
            return self._end(Refusal(408, "request not received in time"))
        return self._request(line[1], line[2], headers)

    def _to_h11(self) -> None:
        """Let h11 read from here on, from the first byte it has not seen."""
        self._direct = False
        if self._pending:
            self._h11.receive_data(bytes(self._pending))
            self._pending.clear()

    def _sync_h11(self) -> None:
        """Have h11 read the request read directly, so it can frame the answer."""
        raw, self._raw = self._raw, None
        if raw is None:
            return
        self._direct = False
        self._h11.receive_data(raw)
        while isinstance(self._h11.next_event(), (h11.Request, h11.Data)):
            pass  # up to its EndOfMessage

    def _accept_head(self, head: h11.Request) -> ReaderEvent | None:
        size = len(head.target) + sum(len(name) + len(value) + 4 for name, value in head.headers)
        if size > self._limits.max_header_bytes:
            # h11 bounds a head that arrives in pieces; this bounds one that arrived at once.
            return self._end(
                Refusal(431, f"request head is larger than {self._limits.max_header_bytes} bytes")
            )
        for name, value in head.headers:
            if name == b"content-length" and int(value) > self._limits.max_body_bytes:
                return self._end(Refusal(413, self._too_large()))
        self._head = head
        if self._h11.client_is_waiting_for_100_continue:
            return Interim(
                self._h11.send(h11.InformationalResponse(status_code=100, headers=[])) or b""
            )
        return None

    def _request(
        self, method: bytes, target: bytes, raw_headers: Sequence[tuple[bytes, bytes]]
    ) -> ReaderEvent:
        try:
            path, _, query_text = target.decode("ascii").partition("?")
            query = (
                dict(
                    parse_qsl(
                        query_text,
                        keep_blank_values=True,
                        errors="strict",
                        max_num_fields=self._limits.max_query_fields,
                    )
                )
                if query_text
                else {}
            )
        except ValueError:  # UnicodeDecodeError included
            return self._end(Refusal(400, "request target is not a valid path and query"))
        if not path.startswith("/"):
            return self._end(Refusal(400, "request target must be a path starting with '/'"))
        headers: dict[str, str] = {}
        for raw_name, raw_value in raw_headers:
            name, value = raw_name.decode("latin-1"), raw_value.decode("latin-1")
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        self._answer_due = True
        return HttpRequest(
            method=method.decode("ascii"),
            path=path,
            query=query,
            headers=headers,
            body=bytes(self._body),
        )

    def _too_large(self) -> str:
        return f"request body is larger than {self._limits.max_body_bytes} bytes"

    def _end(self, event: Refusal | Closed) -> Refusal | Closed:
        self._ended = True
        return event


def _direct_answer(
    status: int,
    headers: Sequence[tuple[str, str]],
    fields: Sequence[tuple[str, str]],
    body: bytes,
) -> bytes | None:
    """The answer as h11 would frame it to a common request, or None where h11 frames it
    differently or would refuse it (it then says why)."""
    if status < 200 or status in (204, 304) or status > 999:
        return None
    out = [b"HTTP/1.1 %d %s\r\n" % (status, reason_phrase(status))]
    for index, (name, value) in enumerate(fields):
        try:
            raw_name, raw_value = name.encode("ascii"), value.encode("ascii")
        except UnicodeEncodeError:
            return None
        if index < len(headers) and (
            name.lower() in _H11_ANSWER_HEADERS
            or _FIELD_NAME.fullmatch(raw_name) is None
            or _FIELD_VALUE.fullmatch(raw_value) is None
        ):
            return None
        out.append(b"%s: %s\r\n" % (raw_name, raw_value))
    out.append(b"\r\n")
    out.append(body)
    return b"".join(out)
