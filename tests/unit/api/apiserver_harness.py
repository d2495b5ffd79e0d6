"""Test harness: an API server on a real unix socket in a temp dir, and raw clients for it."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import h11

from firmware.api import versions
from firmware.api.model import ApiRequest, ApiResponse
from firmware.api.router import Router
from firmware.api.server import ApiSocketServer, ServerLimits

QUERY = f"api-version={versions.LATEST}"


async def echo(request: ApiRequest) -> ApiResponse:
    peer = request.peer
    return ApiResponse(
        body={
            "method": request.method,
            "path": request.path,
            "query": dict(request.query),
            "body_len": len(request.body),
            "listener": request.listener,
            "peer": None if peer is None else [peer.pid, peer.uid, peer.gid],
        }
    )


def make_router() -> Router:
    router = Router()
    router.add("GET", "/echo", echo)
    router.add("POST", "/echo", echo)
    return router


@contextlib.asynccontextmanager
async def serving(
    directory: Path, router: Router | None = None, **limits: float
) -> AsyncIterator[ApiSocketServer]:
    server = ApiSocketServer(
        f"unix://{directory}/mgmt.sock",
        router or make_router(),
        limits=ServerLimits(**limits),  # type: ignore[arg-type]
    )
    async with server:
        yield server


async def exchange(path: str, data: bytes, *, within_s: float = 5.0) -> bytes:
    """Send raw bytes, half-close, and read everything until the server closes."""
    reader, writer = await asyncio.open_unix_connection(path)
    try:
        writer.write(data)
        await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
        async with asyncio.timeout(within_s):
            return await reader.read()
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def parse_responses(data: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """Every response in a byte stream from the server: (status, headers, body)."""
    conn = h11.Connection(h11.CLIENT)
    # h11 needs to have sent requests to read responses: pretend we sent enough GETs.
    answers: list[tuple[int, dict[str, str], bytes]] = []
    conn.send(h11.Request(method="GET", target="/", headers=[("host", "x")]))
    conn.send(h11.EndOfMessage())
    conn.receive_data(data)
    conn.receive_data(b"")
    status, headers, body = 0, {}, bytearray()
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError:
            return answers
        if isinstance(event, h11.Response):
            status = event.status_code
            headers = {k.decode(): v.decode() for k, v in event.headers}
            body = bytearray()
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            answers.append((status, headers, bytes(body)))
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is not h11.DONE:
                return answers
            try:
                conn.start_next_cycle()
            except h11.LocalProtocolError:
                return answers
            conn.send(h11.Request(method="GET", target="/", headers=[("host", "x")]))
            conn.send(h11.EndOfMessage())
        elif event in (h11.NEED_DATA, h11.PAUSED) or isinstance(event, h11.ConnectionClosed):
            return answers


def request_bytes(method: str, target: str, body: bytes = b"", extra: str = "") -> bytes:
    head = f"{method} {target} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    return head.encode() + body


def our_credentials() -> list[int]:
    return [os.getpid(), os.getuid(), os.getgid()]
