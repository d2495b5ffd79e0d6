"""The API client against the real server on a temp socket, and against daemons that misbehave."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from firmware.api.client import ApiClient
from firmware.api.errors import ApiAnswerError, DaemonUnreachable, error_for_answer
from firmware.api.model import ApiRequest, ApiResponse
from firmware.errors import BadRequest, DaemonError, NotFound, Unavailable
from tests.unit.api.apiserver_harness import make_router, serving


def test_missing_socket_is_a_daemon_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "mgmt.sock"
    with pytest.raises(DaemonError) as raised:
        asyncio.run(ApiClient(f"unix://{path}").request("GET", "/echo"))
    assert raised.value.render() == (
        f"cannot reach the edgekeeper daemon at {path} "
        "(is `edgekeeper run` running? see `systemctl status edgekeeper`)"
    )


def test_stale_socket_file_is_the_same_error(tmp_path: Path) -> None:
    path = tmp_path / "mgmt.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()
    with pytest.raises(DaemonUnreachable, match="cannot reach the edgekeeper daemon"):
        asyncio.run(ApiClient(str(path)).request("GET", "/echo"))


def test_answers_and_errors_from_the_server(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with serving(tmp_path) as server:
            client = ApiClient(f"unix://{server.path}")
            answer = await client.request("POST", "/echo", {"x": "a b"}, {"k": "v"})
            assert answer.status == 200
            document = answer.json()
            assert document["query"] == {"api-version": "2022-08-03", "x": "a b"}
            assert document["body_len"] == len(b'{"k": "v"}')
            with pytest.raises(NotFound, match="no such path: /missing"):
                await client.request("GET", "/missing")
            old = ApiClient(server.path, api_version="1999-01-01")
            with pytest.raises(BadRequest, match="unsupported api-version '1999-01-01'"):
                await old.request("GET", "/echo")

    asyncio.run(scenario())


def test_stream_yields_chunks_as_they_come(tmp_path: Path) -> None:
    release = asyncio.Event

    async def scenario() -> None:
        go_on = release()

        async def lines() -> AsyncIterator[bytes]:
            yield b"one\n"
            await go_on.wait()
            yield b"two\n"

        async def follow(request: ApiRequest) -> ApiResponse:
            return ApiResponse(stream=lines())

        router = make_router()
        router.add("GET", "/follow", follow)
        async with serving(tmp_path, router) as server:
            chunks = ApiClient(server.path).stream("GET", "/follow")
            assert await anext(chunks) == b"one\n"
            go_on.set()
            assert await anext(chunks) == b"two\n"
            with pytest.raises(StopAsyncIteration):
                await anext(chunks)
            failing = ApiClient(server.path).stream("GET", "/absent")
            with pytest.raises(NotFound):
                await anext(failing)

    asyncio.run(scenario())


def test_daemon_that_never_answers_times_out(tmp_path: Path) -> None:
    async def scenario() -> None:
        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                await reader.read(1 << 16)
                await reader.read(1 << 16)  # until the client gives up
            finally:
                writer.close()

        path = str(tmp_path / "silent.sock")
        server = await asyncio.start_unix_server(silent, path)
        try:
            with pytest.raises(DaemonUnreachable, match=r"did not answer in 0\.2 s"):
                await ApiClient(path, timeout_s=0.2).request("GET", "/x")
        finally:
            server.close()
            await server.wait_closed()

    asyncio.run(scenario())


def test_daemon_that_hangs_up_mid_answer(tmp_path: Path) -> None:
    async def scenario() -> None:
        async def rude(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read(1 << 16)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort")
            await writer.drain()
            writer.close()

        path = str(tmp_path / "rude.sock")
        server = await asyncio.start_unix_server(rude, path)
        try:
            with pytest.raises(DaemonUnreachable, match="without sending complete message body"):
                await ApiClient(path).request("GET", "/x")
        finally:
            server.close()
            await server.wait_closed()

    asyncio.run(scenario())


def test_daemon_that_breaks_http_or_oversends(tmp_path: Path) -> None:
    async def scenario() -> None:
        answers = iter(
            [b"HTTP/1.1 abc\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n"]
        )

        async def broken(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read(1 << 16)
            writer.write(next(answers))
            await writer.drain()
            writer.close()

        path = str(tmp_path / "broken.sock")
        server = await asyncio.start_unix_server(broken, path)
        try:
            with pytest.raises(DaemonUnreachable, match=r"sent a malformed answer \(.+\)"):
                await ApiClient(path).request("GET", "/x")
            with pytest.raises(DaemonUnreachable, match="sent an answer over 67108864 bytes"):
                await ApiClient(path).request("GET", "/x")
        finally:
            server.close()
            await server.wait_closed()

    asyncio.run(scenario())


def test_error_for_answer_maps_statuses() -> None:
    assert isinstance(error_for_answer(503, {"message": "engine down"}), Unavailable)
    odd = error_for_answer(418, {"message": "teapot"})
    assert isinstance(odd, ApiAnswerError)
    assert odd.http_status == 418
    assert odd.render() == "teapot"
    assert error_for_answer(502, None).render() == "the daemon answered HTTP 502 without a message"
