"""The one HTTP/1.1 client: h11 over asyncio streams, to a unix socket or to TCP with optional TLS,
or to any other `Endpoint` (TLS signed by a key in a TPM or token: `firmware.http.delegated_tls`).

Each request opens its own connection, sends itself, and then either reads the whole answer up to
a size bound (`HttpClient.request`) or hands the body out chunk by chunk while it arrives
(`HttpClient.stream`). `Deadlines` bound every wait: connecting, each silence while the request
goes out and the answer comes in, and the whole exchange. A stream that follows forever (logs
that follow, an events feed) is bounded only until its answer's head has come. Whatever goes
wrong on the way is one `ExchangeFailed` saying what (`Failure`) and where (`Phase`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import h11

from firmware.http.errors import ExchangeFailed, Failure, Phase

MAX_ANSWER_BYTES = 16 * 1024 * 1024

_READ_SIZE = 64 * 1024
_CLOSE_S = 1.0  # how long a polite close (TLS close_notify) may take before we just drop it

_T = TypeVar("_T")

Headers = Sequence[tuple[str, str]]


@dataclass(frozen=True)
class Deadlines:
    """How long an exchange may wait, in seconds (None: no bound).

    `connect_s` bounds opening the connection, TLS handshake included. `read_s` bounds each
    silence: the server taking no more of the request, or sending nothing more of its answer
    (without `read_s`, sending the request is bounded by `connect_s`). `overall_s` bounds the
    whole exchange, from connecting to the answer's last byte.
    """

    connect_s: float | None = 5.0
    read_s: float | None = 30.0
    overall_s: float | None = 60.0


class Endpoint(Protocol):
    """Where the client connects: a name for messages (`str()`), the Host header (`host`), and
    `connect()`, which opens a byte stream to the server (TLS handshake included, if any)."""

    @property
    def host(self) -> str: ...

    def __str__(self) -> str: ...

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]: ...


@dataclass(frozen=True)
class UnixEndpoint:
    """A server on a unix socket."""

    path: str

    def __str__(self) -> str:
        return f"unix://{self.path}"

    @property
    def host(self) -> str:
        """The Host header: a unix socket has no host name of its own."""
        return "localhost"

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_unix_connection(self.path)


@dataclass(frozen=True)
class TcpEndpoint:
    """A server on TCP `host`:`port`, spoken to over TLS when `tls` is given (the server's
    certificate is checked against `host`)."""

    host: str
    port: int
    tls: ssl.SSLContext | None = None

    def __str__(self) -> str:
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://{self.host}:{self.port}"

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection(
            self.host,
            self.port,
            ssl=self.tls,
            server_hostname=self.host if self.tls is not None else None,
        )


@dataclass(frozen=True)
class Answer:
    """A whole answer: status, headers (names in lower case, repeats joined by ", "), body."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        """The body parsed as JSON (None when empty); ValueError when it is not JSON."""
        return json.loads(self.body) if self.body else None


class AnswerStream:
    """An answer whose body is still arriving: `status` and `headers`, then `async for chunk`."""

    def __init__(
        self, status: int, headers: Mapping[str, str], exchange: _Exchange, *, follow: bool
    ) -> None:
        self.status = status
        self.headers = headers
        self._exchange = exchange
        self._follow = follow

    def __aiter__(self) -> AnswerStream:
        return self

    async def __anext__(self) -> bytes:
        chunk = await self._exchange.next_chunk(follow=self._follow)
        if chunk is None:
            raise StopAsyncIteration
        return chunk

    async def read(self, max_bytes: int = MAX_ANSWER_BYTES) -> bytes:
        """The rest of the body; `ExchangeFailed` (`TOO_LARGE`) once it is over `max_bytes`."""
        declared = self.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise self._exchange.failed(Failure.TOO_LARGE, Phase.HEAD, limit=max_bytes)
        body = bytearray()
        async for chunk in self:
            body += chunk
            if len(body) > max_bytes:
                raise self._exchange.failed(Failure.TOO_LARGE, Phase.BODY, limit=max_bytes)
        return bytes(body)


class HttpClient:
    """Requests to one server; `headers` go with every request (a Host header is added unless
    given)."""

    def __init__(
        self, endpoint: Endpoint, *, deadlines: Deadlines | None = None, headers: Headers = ()
    ) -> None:
        self.endpoint = endpoint
        self.deadlines = deadlines or Deadlines()
        self._headers = tuple(headers)

    async def request(
        self,
        method: str,
        target: str,
        *,
        headers: Headers = (),
        body: bytes | None = None,
        deadlines: Deadlines | None = None,
        max_bytes: int = MAX_ANSWER_BYTES,
    ) -> Answer:
        """Send one request and read its whole answer (of at most `max_bytes`)."""
        async with self.stream(
            method, target, headers=headers, body=body, deadlines=deadlines
        ) as answer:
            return Answer(answer.status, answer.headers, await answer.read(max_bytes))

    @contextlib.asynccontextmanager
    async def stream(
        self,
        method: str,
        target: str,
        *,
        headers: Headers = (),
        body: bytes | None = None,
        deadlines: Deadlines | None = None,
        follow: bool = False,
    ) -> AsyncIterator[AnswerStream]:
        """`async with client.stream(...) as answer:` once the answer's head is in, then
        `async for chunk in answer`. With `follow`, the body may take as long as it likes."""
        exchange = _Exchange(self.endpoint, deadlines or self.deadlines)
        request = exchange.encode(method, target, self._request_headers(headers, body), body)
        try:
            await exchange.open()
            await exchange.send(request)
            status, answer_headers = await exchange.head()
            yield AnswerStream(status, answer_headers, exchange, follow=follow)
        except BaseException:
            exchange.abort()
            raise
        await exchange.close()

    def _request_headers(self, headers: Headers, body: bytes | None) -> list[tuple[str, str]]:
        fields = [*self._headers, *headers]
        if not any(name.lower() == "host" for name, _ in fields):
            fields.insert(0, ("host", self.endpoint.host))
        if body is not None:
            fields.append(("content-length", str(len(body))))
        return fields


class _Exchange:
    """One connection carrying one request and its answer, within its deadlines."""

    def __init__(self, endpoint: Endpoint, deadlines: Deadlines) -> None:
        self._endpoint = endpoint
        self._deadlines = deadlines
        self._h11 = h11.Connection(h11.CLIENT)
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._overall_at: float | None = None
        self._peer_closed = False
        self._complete = False  # the whole answer is in

    def encode(
        self, method: str, target: str, headers: list[tuple[str, str]], body: bytes | None
    ) -> bytes:
        events: list[h11.Event] = [h11.Request(method=method, target=target, headers=headers)]
        if body:
            events.append(h11.Data(data=body))
        events.append(h11.EndOfMessage())
        return b"".join(self._h11.send(event) or b"" for event in events)

    async def open(self) -> None:
        if self._deadlines.overall_s is not None:
            self._overall_at = asyncio.get_running_loop().time() + self._deadlines.overall_s
        connecting = self._endpoint.connect()
        try:
            self._reader, self._writer = await self._bounded(
                connecting, Phase.CONNECT, self._deadlines.connect_s, Failure.CONNECT_TIMEOUT
            )
        except ssl.SSLError as error:
            raise self.failed(Failure.TLS, Phase.CONNECT, detail=str(error)) from None
        except (FileNotFoundError, socket.gaierror) as error:
            raise self.failed(Failure.MISSING, Phase.CONNECT, detail=_reason(error)) from None
        except ConnectionRefusedError as error:
            raise self.failed(Failure.REFUSED, Phase.CONNECT, detail=_reason(error)) from None
        except PermissionError as error:
            raise self.failed(Failure.DENIED, Phase.CONNECT, detail=_reason(error)) from None
        except OSError as error:
            raise self.failed(Failure.UNREACHABLE, Phase.CONNECT, detail=_reason(error)) from None

    async def send(self, request: bytes) -> None:
        assert self._writer is not None
        deadlines = self._deadlines
        within = deadlines.read_s if deadlines.read_s is not None else deadlines.connect_s
        try:
            self._writer.write(request)
            await self._bounded(self._writer.drain(), Phase.SEND, within, Failure.READ_TIMEOUT)
        except OSError as error:
            raise self.failed(Failure.CLOSED, Phase.SEND, detail=_reason(error)) from None

    async def head(self) -> tuple[int, dict[str, str]]:
        while True:
            event = await self._next_event(Phase.HEAD, bounded=True)
            if isinstance(event, h11.Response):
                return event.status_code, _answer_headers(event.headers)
            if not isinstance(event, h11.InformationalResponse):
                raise self.failed(Failure.CLOSED, Phase.HEAD)

    async def next_chunk(self, *, follow: bool) -> bytes | None:
        """The body's next chunk, or None at its end."""
        while not self._complete:
            event = await self._next_event(Phase.BODY, bounded=not follow)
            if isinstance(event, h11.Data):
                if event.data:
                    return bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                self._complete = True
            else:
                raise self.failed(Failure.CLOSED, Phase.BODY)
        return None

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.transport.abort()

    async def close(self) -> None:
        """Close politely after a complete answer; drop the connection otherwise."""
        if self._writer is None:
            return
        if not self._complete:
            self.abort()
            return
        self._writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(_CLOSE_S):
                await self._writer.wait_closed()

    def failed(
        self, failure: Failure, phase: Phase, *, limit: float | None = None, detail: str = ""
    ) -> ExchangeFailed:
        return ExchangeFailed(str(self._endpoint), failure, phase, limit=limit, detail=detail)

    async def _next_event(self, phase: Phase, *, bounded: bool) -> object:
        assert self._reader is not None
        while True:
            try:
                event = self._h11.next_event()
            except h11.RemoteProtocolError as error:
                failure = Failure.CLOSED if self._peer_closed else Failure.MALFORMED
                raise self.failed(failure, phase, detail=str(error)) from None
            if event is not h11.NEED_DATA:
                return event
            reading = self._reader.read(_READ_SIZE)
            try:
                if bounded:
                    data = await self._bounded(
                        reading, phase, self._deadlines.read_s, Failure.READ_TIMEOUT
                    )
                else:
                    data = await reading
            except OSError as error:
                raise self.failed(Failure.CLOSED, phase, detail=_reason(error)) from None
            self._peer_closed = not data
            self._h11.receive_data(data)

    async def _bounded(
        self, work: Awaitable[_T], phase: Phase, within_s: float | None, failure: Failure
    ) -> _T:
        """`work` within `within_s` and the overall deadline; `failure` when the first passes."""
        step_at = None if within_s is None else asyncio.get_running_loop().time() + within_s
        at, limit = step_at, within_s
        overall_at = self._overall_at
        if overall_at is not None and (step_at is None or overall_at <= step_at):
            at, limit, failure = overall_at, self._deadlines.overall_s, Failure.OVERALL_TIMEOUT
        timeout = asyncio.timeout_at(at)
        try:
            async with timeout:
                return await work
        except TimeoutError:
            if timeout.expired():
                raise self.failed(failure, phase, limit=limit) from None
            raise


def _answer_headers(fields: Sequence[tuple[bytes, bytes]]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for raw_name, raw_value in fields:
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


def _reason(error: OSError) -> str:
    return error.strerror or str(error) or type(error).__name__
