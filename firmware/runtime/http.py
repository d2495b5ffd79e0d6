"""HTTP/1.1 requests over a unix socket with h11, for talking to the Docker engine.

h11 keeps the protocol state; this module only moves bytes between it and an asyncio stream.
A response body is either read whole (`request`) or handed out chunk by chunk while it arrives
(`stream`, for logs that follow and the events feed). A socket that is missing or refuses us is
reported as `EngineUnreachable`, which the engine client turns into `RuntimeUnavailable`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import urlencode

import h11

_READ = 64 * 1024


class EngineUnreachable(OSError):
    """The engine socket is missing, refused the connection, or closed it mid-answer."""


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> object:
        return json.loads(self.body) if self.body else None


class StreamingResponse:
    """A response whose body is still arriving; iterate `chunks()` to read it."""

    def __init__(self, status: int, headers: Mapping[str, str], conn: _Exchange) -> None:
        self.status = status
        self.headers = headers
        self._exchange = conn

    async def chunks(self) -> AsyncIterator[bytes]:
        async for chunk in self._exchange.body():
            yield chunk

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.chunks()])


class UnixHttpClient:
    """Makes requests to one unix socket; one connection per request."""

    def __init__(self, socket_path: str, *, connect_timeout: float = 5.0) -> None:
        self.socket_path = socket_path
        self._connect_timeout = connect_timeout

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, object] | None = None,
        body: object = None,
        headers: Mapping[str, str] | None = None,
        limit: float | None = 60.0,
    ) -> HttpResponse:
        """The whole answer, within `limit` seconds."""
        # asyncio.timeout, not wait_for: wait_for can swallow a cancellation that arrives just as
        # the answer completes, leaving the caller running after it was cancelled.
        async with (
            asyncio.timeout(limit),
            self.stream(method, path, query=query, body=body, headers=headers) as rsp,
        ):
            return HttpResponse(rsp.status, rsp.headers, await rsp.read())

    @asynccontextmanager
    async def stream(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, object] | None = None,
        body: object = None,
        headers: Mapping[str, str] | None = None,
    ) -> AsyncIterator[StreamingResponse]:
        exchange = _Exchange()
        await exchange.open(self.socket_path, self._connect_timeout)
        try:
            target = path + ("?" + urlencode(_query(query)) if query else "")
            status, rsp_headers = await exchange.send(method, target, _encode(body), headers or {})
            yield StreamingResponse(status, rsp_headers, exchange)
        finally:
            exchange.close()


class _Exchange:
    """One connection carrying one request and its response."""

    def __init__(self) -> None:
        self._conn = h11.Connection(h11.CLIENT)
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def open(self, socket_path: str, limit: float) -> None:
        try:
            async with asyncio.timeout(limit):
                self._reader, self._writer = await asyncio.open_unix_connection(socket_path)
        except (TimeoutError, OSError) as exc:
            raise EngineUnreachable(f"{socket_path}: {exc or 'timed out'}") from exc

    async def send(
        self, method: str, target: str, body: bytes | None, headers: Mapping[str, str]
    ) -> tuple[int, dict[str, str]]:
        assert self._writer is not None
        fields = [("Host", "docker"), *headers.items()]
        if body is not None:
            fields += [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        data = self._conn.send(h11.Request(method=method, target=target, headers=fields))
        if body:
            data += self._conn.send(h11.Data(data=body))
        data += self._conn.send(h11.EndOfMessage())
        try:
            self._writer.write(data)
            await self._writer.drain()
        except OSError as exc:
            raise EngineUnreachable(str(exc)) from exc
        event = await self._next()
        while isinstance(event, h11.InformationalResponse):
            event = await self._next()
        if not isinstance(event, h11.Response):
            raise EngineUnreachable(f"engine answered with {type(event).__name__}, not a response")
        headers_out = {k.decode().lower(): v.decode("latin-1") for k, v in event.headers}
        return event.status_code, headers_out

    async def body(self) -> AsyncIterator[bytes]:
        while True:
            event = await self._next()
            if isinstance(event, h11.Data):
                yield bytes(event.data)
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                return

    async def _next(self) -> object:
        assert self._reader is not None
        while True:
            try:
                event = self._conn.next_event()
            except h11.RemoteProtocolError as exc:
                raise EngineUnreachable(f"engine broke HTTP: {exc}") from exc
            if event is not h11.NEED_DATA:
                return event
            try:
                data = await self._reader.read(_READ)
            except OSError as exc:
                raise EngineUnreachable(str(exc)) from exc
            # Empty data is the engine closing: h11 then ends the body or reports the break.
            self._conn.receive_data(data)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def _query(query: Mapping[str, object] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in (query or {}).items():
        if value is None:
            continue
        if isinstance(value, bool):
            out[key] = "1" if value else "0"
        elif isinstance(value, (dict, list)):
            out[key] = json.dumps(value, separators=(",", ":"))
        else:
            out[key] = str(value)
    return out


def _encode(body: object) -> bytes | None:
    if body is None:
        return None
    if isinstance(body, bytes):
        return body
    return json.dumps(body, separators=(",", ":")).encode()
