"""The engine client against a fake engine on a unix socket that stalls: a stalled answer ends in
`RuntimeUnavailable` within the read deadline; streams that follow, and requests that keep the
engine busy (a stop), may take longer."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from pathlib import Path

import pytest

from firmware.http.client import Deadlines
from firmware.runtime.container import RuntimeUnavailable
from firmware.runtime.engine import DockerEngine
from tests.peers.socket_server import serving

DEADLINES = Deadlines(connect_s=1.0, read_s=0.3, overall_s=5.0)

PING = b"HTTP/1.1 200 OK\r\nApi-Version: 1.43\r\nContent-Length: 2\r\n\r\nOK"

# What the fake engine does for a path: send bytes, sleep for a float, then stay silent.
Script = Sequence[bytes | float]


@contextlib.asynccontextmanager
async def fake_engine(tmp_path: Path, routes: Mapping[str, Script]) -> AsyncIterator[str]:
    """A Docker engine that speaks API 1.43 on /_ping and plays `routes` for the rest."""

    async def play(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        target = head.split(b" ")[1].decode()
        path = target.partition("?")[0].removeprefix("/v1.43")
        if path == "/_ping":
            writer.write(PING)
        for step in routes.get(path, ()):
            if isinstance(step, bytes):
                writer.write(step)
                await writer.drain()
            else:
                await asyncio.sleep(step)
        await asyncio.Event().wait()

    path = str(tmp_path / "docker.sock")
    async with serving(play, lambda connection: asyncio.start_unix_server(connection, path)):
        yield path


def answer(body: bytes, status: str = "200 OK") -> bytes:
    return b"HTTP/1.1 %s\r\nContent-Length: %d\r\n\r\n%s" % (status.encode(), len(body), body)


async def unavailable_within_deadline(work: Awaitable[object]) -> RuntimeUnavailable:
    started = time.monotonic()
    with pytest.raises(RuntimeUnavailable) as raised:
        await work
    took = time.monotonic() - started
    assert DEADLINES.read_s is not None
    assert DEADLINES.read_s <= took < DEADLINES.read_s + 1.0
    return raised.value


async def test_an_engine_that_never_answers_is_unavailable_after_the_read_deadline(
    tmp_path: Path,
) -> None:
    async with fake_engine(tmp_path, {}) as socket_path:
        engine = DockerEngine(socket_path, deadlines=DEADLINES)
        error = await unavailable_within_deadline(engine.list_containers())
    assert error.render() == (
        f"the container engine at {socket_path} cannot be reached (unix://{socket_path} went "
        "silent while waiting for the answer (0.3 s)) (is dockerd running? check [runtime] uri "
        "in config.toml)"
    )


async def test_an_answer_that_stalls_halfway_is_unavailable(tmp_path: Path) -> None:
    half = b'HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{"Id":'
    async with fake_engine(tmp_path, {"/containers/c1/json": [half]}) as socket_path:
        engine = DockerEngine(socket_path, deadlines=DEADLINES)
        error = await unavailable_within_deadline(engine.inspect("c1"))
    assert "went silent while reading the answer's body" in error.message


async def test_logs_that_stall_are_unavailable(tmp_path: Path) -> None:
    inspect = answer(b'{"Config": {"Tty": true}}')
    logs_head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    routes = {
        "/containers/c1/json": [inspect],
        "/containers/c1/logs": [logs_head, b"3\r\nab\n\r\n"],
    }
    async with fake_engine(tmp_path, routes) as socket_path:
        engine = DockerEngine(socket_path, deadlines=DEADLINES)
        frames = engine.logs("c1")
        assert (await anext(frames)).data == b"ab\n"
        await unavailable_within_deadline(anext(frames))
    async with fake_engine(tmp_path, {"/containers/c1/json": [inspect]}) as socket_path:
        engine = DockerEngine(socket_path, deadlines=DEADLINES)
        await unavailable_within_deadline(anext(engine.logs("c1")))


async def test_the_events_feed_may_stay_quiet_longer_than_the_read_deadline(
    tmp_path: Path,
) -> None:
    event = b'{"Type":"container","Action":"start","id":"c1"}\n'
    feed = [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", 0.6]
    feed.append(b"%x\r\n%s\r\n" % (len(event), event))
    async with fake_engine(tmp_path, {"/events": feed}) as socket_path:
        engine = DockerEngine(socket_path, deadlines=DEADLINES)
        async with engine.subscribe() as events:
            assert (await anext(events))["Action"] == "start"


async def test_a_stop_may_keep_the_engine_busy_for_its_grace_time(tmp_path: Path) -> None:
    routes = {"/containers/c1/stop": [0.6, answer(b"", "204 No Content")]}
    async with fake_engine(tmp_path, routes) as socket_path:
        engine = DockerEngine(socket_path, deadlines=DEADLINES)
        await engine.stop("c1", grace=0)
        await unavailable_within_deadline(engine.start("c1"))
