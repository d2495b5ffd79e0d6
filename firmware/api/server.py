"""The HTTP/1.1 server of the local APIs: asyncio unix sockets feeding h11, answers from the router.

Each connection is its own task: h11 parses, this module only moves bytes and enforces the bounds
(header size, body size, time to send a request, time to take an answer, idle keep-alive, number
of connections). A client that stalls or misbehaves gets a 4xx where HTTP still allows one and is
dropped; it never holds up another client and never takes the server down. Streamed responses
(`ApiResponse.stream`) go out with chunked encoding and end the connection when done, or as soon
as the client hangs up.

`ApiSocketServer` serves one socket for one listener name; `start_servers` binds several, all or
none.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import select
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import h11

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

log = logging.getLogger("edgekeeper.api")

_READ_SIZE = 64 * 1024
_MAX_QUERY_FIELDS = 64
_LINGER_S = 1.0  # how long a refused client may go on sending before we close
_LINGER_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class ServerLimits:
    """Bounds every connection lives within."""

    max_body_bytes: int = 1024 * 1024
    max_header_bytes: int = 16 * 1024
    request_timeout_s: float = 10.0  # from a request's first byte to its last
    idle_timeout_s: float = 60.0  # keep-alive wait for the next request
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
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=limits.max_header_bytes)

    async def serve(self) -> None:
        try:
            while True:
                request = await self._read_request()
                if request is None:
                    return
                response = await self._router.dispatch(request)
                log.debug(
                    "%s %s on %s -> %d",
                    request.method,
                    request.path,
                    self._listener,
                    response.status,
                )
                await self._send(response)
                if self._h11.our_state is not h11.DONE or self._h11.their_state is not h11.DONE:
                    return
                self._h11.start_next_cycle()
        except _Drop:
            return
        except (ConnectionError, h11.LocalProtocolError) as error:
            log.debug("connection on %s ended: %s", self._listener, error)
        except Exception:
            log.error("internal error on a %s connection", self._listener, exc_info=True)

    # --- reading -------------------------------------------------------------------------

    async def _read_request(self) -> ApiRequest | None:
        loop = asyncio.get_running_loop()
        deadline: float | None = None
        if self._h11.trailing_data[0]:
            deadline = loop.time() + self._limits.request_timeout_s
        head: h11.Request | None = None
        body = bytearray()
        while True:
            try:
                event = self._h11.next_event()
            except h11.RemoteProtocolError as error:
                await self._refuse(error.error_status_hint, f"malformed HTTP request: {error}")
                return None
            if event is h11.NEED_DATA:
                if deadline is None:
                    timeout = self._limits.idle_timeout_s
                else:
                    timeout = max(deadline - loop.time(), 0.0)
                data = await self._receive(timeout)
                if data is None:
                    if deadline is not None:
                        await self._refuse(408, "request not received in time", linger=False)
                    return None
                if deadline is None:
                    deadline = loop.time() + self._limits.request_timeout_s
                self._h11.receive_data(data)
            elif isinstance(event, h11.Request):
                head = event
                if not await self._accept_head(event):
                    return None
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > self._limits.max_body_bytes:
                    await self._refuse(413, self._too_large())
                    return None
            elif isinstance(event, h11.EndOfMessage):
                assert head is not None
                return await self._request_from(head, bytes(body))
            else:  # ConnectionClosed, or PAUSED after the peer closed
                return None

    async def _receive(self, within_s: float) -> bytes | None:
        """Bytes from the client (b"" at EOF), or None when it sent nothing `within_s`."""
        try:
            async with asyncio.timeout(within_s):
                return await self._reader.read(_READ_SIZE)
        except TimeoutError:
            return None

    async def _accept_head(self, head: h11.Request) -> bool:
        size = len(head.target) + sum(len(name) + len(value) + 4 for name, value in head.headers)
        if size > self._limits.max_header_bytes:
            # h11 bounds a head that arrives in pieces; this bounds one that arrived at once.
            await self._refuse(
                431, f"request head is larger than {self._limits.max_header_bytes} bytes"
            )
            return False
        for name, value in head.headers:
            if name == b"content-length" and int(value) > self._limits.max_body_bytes:
                await self._refuse(413, self._too_large())
                return False
        if self._h11.client_is_waiting_for_100_continue:
            await self._write(
                self._h11.send(h11.InformationalResponse(status_code=100, headers=[]))
            )
        return True

    def _too_large(self) -> str:
        return f"request body is larger than {self._limits.max_body_bytes} bytes"

    async def _request_from(self, head: h11.Request, body: bytes) -> ApiRequest | None:
        try:
            target = head.target.decode("ascii")
            path, _, query_text = target.partition("?")
            query = dict(
                parse_qsl(
                    query_text,
                    keep_blank_values=True,
                    errors="strict",
                    max_num_fields=_MAX_QUERY_FIELDS,
                )
            )
        except (UnicodeDecodeError, ValueError):
            await self._refuse(400, "request target is not a valid path and query")
            return None
        if not path.startswith("/"):
            await self._refuse(400, "request target must be a path starting with '/'")
            return None
        headers: dict[str, str] = {}
        for name, value in head.headers:
            key = name.decode("latin-1")
            text = value.decode("latin-1")
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
        return ApiRequest(
            method=head.method.decode("ascii"),
            path=path,
            query=query,
            headers=headers,
            body=body,
            peer=self._peer,
            listener=self._listener,
        )

    # --- writing -------------------------------------------------------------------------

    async def _write(self, data: bytes | None) -> None:
        if not data:
            return
        self._writer.write(data)
        if self._writer.transport.get_write_buffer_size() == 0:
            return  # all sent already: nothing to wait for
        try:
            await asyncio.wait_for(self._writer.drain(), self._limits.write_timeout_s)
        except (TimeoutError, ConnectionError):
            raise _Drop from None

    async def _refuse(self, status: int, message: str, *, linger: bool = True) -> None:
        """Answer an error the client caused, then end the connection (where HTTP allows it).

        With `linger`, what the client is still sending is read and dropped for a moment before
        the close: closing a unix socket with unread data resets it, and the client could lose
        the answer that says what was wrong.
        """
        if self._h11.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        body = ApiResponse.error(status, message).encoded_body()
        headers = [
            ("content-type", "application/json"),
            ("content-length", str(len(body))),
            ("connection", "close"),
        ]
        try:
            answer = b"".join(
                self._h11.send(event) or b""
                for event in (
                    h11.Response(status_code=status, headers=headers),
                    h11.Data(data=body),
                    h11.EndOfMessage(),
                )
            )
            await self._write(answer)
        except (h11.LocalProtocolError, _Drop):
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
            body = response.encoded_body()
            headers.append(("content-length", str(len(body))))
            events: list[h11.Event] = [h11.Response(status_code=response.status, headers=headers)]
            if body:
                events.append(h11.Data(data=body))
            events.append(h11.EndOfMessage())
            # One write for the whole answer: one syscall and one wake-up for the client.
            await self._write(b"".join(self._h11.send(event) or b"" for event in events))
            return
        headers.append(("connection", "close"))
        await self._write(
            self._h11.send(h11.Response(status_code=response.status, headers=headers))
        )
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
                if chunk:
                    await self._write(self._h11.send(h11.Data(data=chunk)))
            await self._write(self._h11.send(h11.EndOfMessage()))
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
    ) -> None:
        self.uri = uri
        self.listener = listener
        self._address = parse_socket_uri(uri)
        self._router = router
        self._mode = mode
        self._group = group
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
                self._address.path, mode=self._mode, group=self._group
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
        try:
            sock: socket.socket | None = writer.get_extra_info("socket")
            peer = peer_credentials(sock) if sock is not None else None
            connection = _Connection(
                reader, writer, self._router, self.listener, self._limits, peer, sock
            )
            if len(self._connections) > self._limits.max_connections:
                await connection._refuse(503, "too many connections; try again shortly")
            else:
                await connection.serve()
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), self._limits.write_timeout_s)


async def start_servers(
    sockets: list[tuple[str, str]],
    router: Router,
    *,
    mode: int,
    group: str | None = None,
    limits: ServerLimits | None = None,
) -> list[ApiSocketServer]:
    """Bind every `(uri, listener)` socket, or none: a failure closes the ones already bound."""
    servers: list[ApiSocketServer] = []
    try:
        for uri, listener in sockets:
            server = ApiSocketServer(
                uri, router, listener=listener, mode=mode, group=group, limits=limits
            )
            await server.start()
            servers.append(server)
    except BaseException:
        for server in servers:
            await server.close()
        raise
    return servers
