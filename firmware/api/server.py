"""The HTTP/1.1 server of the local APIs: asyncio unix sockets feeding a `RequestReader`.

Each connection is its own task. The sans-IO `RequestReader` (firmware.http.reader) parses and
enforces the request bounds (header size, body size, time to send a request, idle keep-alive);
this module moves the bytes, hands requests to the router, and adds the bounds only a socket has
(time to take an answer, number of connections). A client that stalls or misbehaves gets a 4xx
where HTTP still allows one and is dropped; it never holds up another client and never takes the
server down. Streamed responses (`ApiResponse.stream`) go out with chunked encoding and end the
connection when done, or as soon as the client hangs up. A connection's peer credentials carry a
pidfd for the process that connected, held while the connection lives and closed with it.

`ApiSocketServer` serves one socket for one listener name; `start_servers` binds several, all or
none.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import select
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from firmware.api.model import ApiRequest, ApiResponse, PeerCredentials
from firmware.api.router import Router
from firmware.api.sockets import (
    SocketFile,
    bind_unix_socket,
    inherited_socket,
    parse_socket_uri,
    peer_credentials,
)
from firmware.errors import EdgekeeperError
from firmware.http.reader import (
    HttpRequest,
    Interim,
    NeedData,
    Refusal,
    RequestLimits,
    RequestReader,
)

log = logging.getLogger("edgekeeper.api")

_READ_SIZE = 64 * 1024
_LINGER_S = 1.0  # how long a refused client may go on sending before we close
_LINGER_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class ServerLimits(RequestLimits):
    """Bounds every connection lives within: the request bounds, and the socket's own."""

    write_timeout_s: float = 10.0  # a client that does not take its answer
    max_connections: int = 64


class _Drop(Exception):
    """End this connection now (the client is gone, stalled, or beyond repair)."""


class _Connection:
    """One client connection: requests in, answers out, until either side ends it."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        router: Router,
        listener: str,
        limits: ServerLimits,
        peer: PeerCredentials | None,
        sock: socket.socket | None = None,
    ) -> None:
        self._sock = sock
        self._reader = reader
        self._writer = writer
        self._router = router
        self._listener = listener
        self._limits = limits
        self._peer = peer
        self._requests = RequestReader(limits)

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                event = self._requests.next_event(loop.time())
                if isinstance(event, NeedData):
                    await self._receive(event.until)
                elif isinstance(event, Interim):
                    await self._write(event.data)
                elif isinstance(event, HttpRequest):
                    await self._answer(event)
                elif isinstance(event, Refusal):
                    # A client that ran out of time is not waited for any longer.
                    await self._refuse(event.status, event.message, linger=event.status != 408)
                    return
                else:
                    log.debug("connection on %s ended: %s", self._listener, event.reason)
                    return
        except _Drop:
            return
        except ConnectionError as error:
            log.debug("connection on %s ended: %s", self._listener, error)
        except Exception:
            log.error("internal error on a %s connection", self._listener, exc_info=True)

    async def _receive(self, until: float) -> None:
        """Feed the reader what the client sends before `until` (b"" at EOF); nothing if it sent
        nothing by then (the reader then sees its deadline passed)."""
        try:
            async with asyncio.timeout_at(until):
                data = await self._reader.read(_READ_SIZE)
        except TimeoutError:
            return
        self._requests.feed(data, asyncio.get_running_loop().time())

    async def _answer(self, request: HttpRequest) -> None:
        response = await self._router.dispatch(
            ApiRequest(
                method=request.method,
                path=request.path,
                query=request.query,
                headers=request.headers,
                body=request.body,
                peer=self._peer,
                listener=self._listener,
            )
        )
        log.debug(
            "%s %s on %s -> %d", request.method, request.path, self._listener, response.status
        )
        await self._send(response)

    # --- writing -------------------------------------------------------------------------

    async def _write(self, data: bytes) -> None:
        if not data:
            return
        self._writer.write(data)
        if self._writer.transport.get_write_buffer_size() == 0:
            return  # all sent already: nothing to wait for
        try:
            async with asyncio.timeout(self._limits.write_timeout_s):
                await self._writer.drain()
        except (TimeoutError, ConnectionError):
            raise _Drop from None

    async def _refuse(self, status: int, message: str, *, linger: bool = True) -> None:
        """Answer an error the client caused, then end the connection (where HTTP allows it).

        With `linger`, what the client is still sending is read and dropped for a moment before
        the close: closing a unix socket with unread data resets it, and the client could lose
        the answer that says what was wrong.
        """
        if not self._requests.can_answer:
            return
        body = ApiResponse.error(status, message).encoded_body()
        headers = [("content-type", "application/json")]
        try:
            await self._write(self._requests.answer(status, headers, body, close=True))
        except _Drop:
            return
        if linger:
            await self._linger()

    async def _linger(self) -> None:
        with contextlib.suppress(OSError, RuntimeError):
            self._writer.write_eof()
        dropped = 0
        try:
            async with asyncio.timeout(_LINGER_S):
                while dropped < _LINGER_BYTES:
                    chunk = await self._reader.read(_READ_SIZE)
                    if not chunk:
                        return
                    dropped += len(chunk)
        except (TimeoutError, ConnectionError):
            return

    async def _send(self, response: ApiResponse) -> None:
        headers: list[tuple[str, str]] = []
        content_type = response.content_type()
        if content_type is not None:
            headers.append(("content-type", content_type))
        headers.extend(
            (name, value) for name, value in response.headers if name.lower() != "content-type"
        )
        if response.stream is None:
            # One write for the whole answer: one syscall and one wake-up for the client.
            body = response.encoded_body()
            await self._write(self._requests.answer(response.status, headers, body))
            return
        await self._write(self._requests.start_answer(response.status, headers))
        await self._send_stream(response.stream)

    async def _send_stream(self, stream: AsyncIterator[bytes]) -> None:
        chunks = aiter(stream)
        hangup = asyncio.ensure_future(self._wait_for_hangup())
        try:
            while True:
                following = asyncio.ensure_future(anext(chunks))
                await asyncio.wait({following, hangup}, return_when=asyncio.FIRST_COMPLETED)
                if not following.done():
                    following.cancel()
                    with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration, Exception):
                        await following
                    raise _Drop
                try:
                    chunk = following.result()
                except StopAsyncIteration:
                    break
                except EdgekeeperError as error:
                    log.warning("stream on %s ended early: %s", self._listener, error.render())
                    raise _Drop from None
                await self._write(self._requests.answer_chunk(chunk))
            await self._write(self._requests.end_answer())
        finally:
            hangup.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await hangup
            close = getattr(stream, "aclose", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    await close()

    async def _wait_for_hangup(self) -> None:
        """Return when the client has closed the connection (what it sends meanwhile is not read
        as HTTP). A client that only shut down its sending side still wants the stream: then
        only a failed write ends it."""
        while await self._reader.read(_READ_SIZE):
            pass
        if self._sock is None or _hung_up(self._sock):
            return
        await asyncio.Event().wait()


def _hung_up(sock: socket.socket) -> bool:
    """True if both directions of a unix socket are shut (the peer closed, not half-closed)."""
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLHUP)
    return any(events & select.POLLHUP for _, events in poller.poll(0))


class ApiSocketServer:
    """Serves the router on one unix socket, for one listener ("mgmt", "workload:<module>", ...)."""

    def __init__(
        self,
        uri: str,
        router: Router,
        *,
        listener: str = "mgmt",
        mode: int = 0o660,
        group: str | None = None,
        limits: ServerLimits | None = None,
        staging: Path | None = None,
    ) -> None:
        self.uri = uri
        self.listener = listener
        self._address = parse_socket_uri(uri)
        self._router = router
        self._mode = mode
        self._group = group
        self._staging = staging
        self._limits = limits or ServerLimits()
        self._server: asyncio.Server | None = None
        self._socket_file: SocketFile | None = None
        self._connections: set[asyncio.Task[Any]] = set()
        self._closed = asyncio.Event()

    @property
    def path(self) -> str | None:
        return self._address.path

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    async def start(self) -> None:
        """Bind the socket (replacing a stale one) and accept connections."""
        if self._address.path is not None:
            sock, self._socket_file = bind_unix_socket(
                self._address.path, mode=self._mode, group=self._group, staging=self._staging
            )
        else:
            assert self._address.fd_name is not None
            sock = inherited_socket(self._address.fd_name)
        try:
            self._server = await asyncio.start_unix_server(
                self._accept, sock=sock, limit=self._limits.max_header_bytes
            )
        except BaseException:
            sock.close()
            self._remove_file()
            raise
        self._closed.clear()
        log.info("API listener %s on %s", self.listener, self.uri)

    async def serve_forever(self) -> None:
        """Wait until `close()` (the accept loop runs from `start()` on)."""
        await self._closed.wait()

    async def close(self) -> None:
        """Stop accepting, end every connection, remove our socket file."""
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        self._remove_file()
        self._closed.set()

    async def __aenter__(self) -> ApiSocketServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _remove_file(self) -> None:
        if self._socket_file is not None:
            with contextlib.suppress(OSError):
                self._socket_file.remove()
            self._socket_file = None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        sock: socket.socket | None = writer.get_extra_info("socket")
        peer = peer_credentials(sock) if sock is not None else None
        try:
            connection = _Connection(
                reader, writer, self._router, self.listener, self._limits, peer, sock
            )
            if len(self._connections) > self._limits.max_connections:
                await connection._refuse(503, "too many connections; try again shortly")
            else:
                await connection.serve()
        finally:
            self._connections.discard(task)
            if peer is not None and peer.pidfd is not None:
                os.close(peer.pidfd)
            writer.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self._limits.write_timeout_s):
                    await writer.wait_closed()


async def start_servers(
    sockets: list[tuple[str, str]],
    router: Router,
    *,
    mode: int,
    group: str | None = None,
    limits: ServerLimits | None = None,
    staging: Path | None = None,
) -> list[ApiSocketServer]:
    """Bind every `(uri, listener)` socket, or none: a failure closes the ones already bound.
    `staging`: where they are made before being renamed into place (see `bind_unix_socket`)."""
    servers: list[ApiSocketServer] = []
    try:
        for uri, listener in sockets:
            server = ApiSocketServer(
                uri,
                router,
                listener=listener,
                mode=mode,
                group=group,
                limits=limits,
                staging=staging,
            )
            await server.start()
            servers.append(server)
    except BaseException:
        for server in servers:
            await server.close()
        raise
    return servers
