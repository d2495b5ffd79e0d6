"""The HTTP server on a real unix socket: keep-alive, bounds, slow clients, malformed input,
streaming, peer credentials, and the socket file's life."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import stat
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from firmware.api.listeners import ApiServerService
from firmware.api.model import ApiRequest, ApiResponse
from firmware.api.server import ApiSocketServer
from firmware.api.sockets import bind_unix_socket, parse_socket_uri
from firmware.api.workload.access import process_running
from firmware.config.schema import Listen
from firmware.errors import ConfigError, DaemonError
from tests.peers.waiting import wait_until_async
from tests.unit.api.apiserver_harness import (
    QUERY,
    exchange,
    make_router,
    our_credentials,
    parse_responses,
    request_bytes,
    serving,
)


@pytest.fixture(autouse=True)
def no_internal_errors(caplog: pytest.LogCaptureFixture):
    with caplog.at_level(logging.DEBUG, logger="edgekeeper.api"):
        yield
    errors = [
        r for r in caplog.records if r.name == "edgekeeper.api" and r.levelno >= logging.ERROR
    ]
    assert not errors, [r.getMessage() for r in errors]


def test_keep_alive_serves_sequential_and_pipelined_requests(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with serving(tmp_path) as server:
            reader, writer = await asyncio.open_unix_connection(server.path)
            try:
                writer.write(request_bytes("GET", f"/echo?{QUERY}"))
                first = await reader.readuntil(b"}")
                assert first.startswith(b"HTTP/1.1 200 ")
                writer.write(request_bytes("POST", f"/echo?{QUERY}", b"abc"))
                writer.write(
                    request_bytes("GET", f"/echo?{QUERY}&x=1", extra="Connection: close\r\n")
                )
                rest = await asyncio.wait_for(reader.read(), 5)
            finally:
                writer.close()
                await writer.wait_closed()
            answers = parse_responses(first + rest)
            assert [status for status, _, _ in answers] == [200, 200, 200]
            assert json.loads(answers[1][2])["body_len"] == 3
            assert json.loads(answers[2][2])["query"] == {"api-version": "2022-08-03", "x": "1"}
            assert answers[0][1]["content-type"] == "application/json"

    asyncio.run(scenario())


def test_peer_credentials_are_ours(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with serving(tmp_path) as server:
            answer = await exchange(server.path, request_bytes("GET", f"/echo?{QUERY}"))
        ((status, _, body),) = parse_responses(answer)
        assert status == 200
        document = json.loads(body)
        assert document["peer"] == our_credentials()
        assert document["listener"] == "mgmt"

    asyncio.run(scenario())


def test_each_connection_pins_its_peer_with_a_pidfd_closed_when_it_ends(tmp_path: Path) -> None:
    pidfds: list[int] = []
    alive: list[bool] = []

    async def record(request: ApiRequest) -> ApiResponse:
        peer = request.peer
        assert peer is not None and peer.pid == os.getpid() and peer.pidfd is not None
        pidfds.append(peer.pidfd)
        alive.append(process_running(peer.pidfd))
        return ApiResponse(204)

    router = make_router()
    router.add("GET", "/peer", record)

    async def scenario() -> None:
        async with serving(tmp_path, router) as server:
            answer = await exchange(server.path, request_bytes("GET", f"/peer?{QUERY}"))
            assert parse_responses(answer)[0][0] == 204
            await wait_until_async(
                lambda: server.connection_count == 0, timeout_s=5, what="the connection to end"
            )
            assert not is_pidfd(pidfds[0]), "the connection's pidfd outlived it"

    asyncio.run(scenario())
    assert alive == [True]


def is_pidfd(fd: int) -> bool:
    try:
        return "pidfd" in os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return False


def test_body_over_the_bound_is_413(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with serving(tmp_path, max_body_bytes=1000) as server:
            declared = await exchange(
                server.path,
                b"POST /echo?" + QUERY.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 5000"
                b"\r\n\r\n",
            )
            chunk = b"400\r\n" + b"x" * 0x400 + b"\r\n"
            chunked = await exchange(
                server.path,
                b"POST /echo?" + QUERY.encode() + b" HTTP/1.1\r\nHost: x\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n" + chunk + chunk,
            )
            fits = await exchange(server.path, request_bytes("POST", f"/echo?{QUERY}", b"y" * 1000))
        for answer in (declared, chunked):
            ((status, headers, body),) = parse_responses(answer)
            assert status == 413
            assert json.loads(body) == {"message": "request body is larger than 1000 bytes"}
            assert headers["connection"] == "close"
        assert parse_responses(fits)[0][0] == 200

    asyncio.run(scenario())


def test_expect_100_continue_is_honoured(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with serving(tmp_path) as server:
            reader, writer = await asyncio.open_unix_connection(server.path)
            try:
                writer.write(
                    f"POST /echo?{QUERY} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
                    "Expect: 100-continue\r\n\r\n".encode()
                )
                interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
                assert interim.startswith(b"HTTP/1.1 100 ")
                writer.write(b"ok")
                final = await asyncio.wait_for(reader.readuntil(b"}"), 5)
                assert final.startswith(b"HTTP/1.1 200 ")
            finally:
                writer.close()
                await writer.wait_closed()

    asyncio.run(scenario())


def test_slow_client_is_dropped_and_never_blocks_others(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with serving(tmp_path, request_timeout_s=0.6) as server:
            slow_reader, slow_writer = await asyncio.open_unix_connection(server.path)
            slow_writer.write(b"GET /echo?" + QUERY.encode() + b" HTTP/1.1\r\nHost:")
            await slow_writer.drain()
            started = time.monotonic()
            fast = await exchange(server.path, request_bytes("GET", f"/echo?{QUERY}"))
            assert time.monotonic() - started < 0.3
            assert parse_responses(fast)[0][0] == 200
            dropped = await asyncio.wait_for(slow_reader.read(), 3)
            assert time.monotonic() - started >= 0.5
            assert parse_responses(dropped)[0][0] == 408
            slow_writer.close()
            await slow_writer.wait_closed()
            assert server.connection_count == 0

    asyncio.run(scenario())


def test_idle_keep_alive_connection_is_closed(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with serving(tmp_path, idle_timeout_s=0.3) as server:
            reader, writer = await asyncio.open_unix_connection(server.path)
            writer.write(request_bytes("GET", f"/echo?{QUERY}"))
            data = await asyncio.wait_for(reader.read(), 3)
            assert len(parse_responses(data)) == 1
            writer.close()
            await writer.wait_closed()

    asyncio.run(scenario())


def test_client_that_does_not_read_is_dropped(tmp_path: Path) -> None:
    big = os.urandom(4 * 1024 * 1024)

    async def large(request: ApiRequest) -> ApiResponse:
        return ApiResponse(body=big)

    router = make_router()
    router.add("GET", "/large", large)

    async def scenario() -> None:
        async with serving(tmp_path, router, write_timeout_s=0.3) as server:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(server.path)
            sock.sendall(request_bytes("GET", f"/large?{QUERY}"))
            fast = await exchange(server.path, request_bytes("GET", f"/echo?{QUERY}"))
            assert parse_responses(fast)[0][0] == 200
            await wait_until_async(
                lambda: server.connection_count == 0, timeout_s=5, what="the slow client dropped"
            )
            sock.close()

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"GARBAGE\r\n\r\n", 400),  # refused by the request reader
        (b"GET /echo HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 20000 + b"\r\n\r\n", 431),
        (b"GET /nowhere?" + QUERY.encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n", 404),  # router
        (b"DELETE /echo?" + QUERY.encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n", 405),
    ],
)
def test_refusals_and_errors_go_out_as_json(tmp_path: Path, data: bytes, status: int) -> None:
    """What the reader refuses and what the router rejects both reach the client as an answer
    with a message (every refusal the reader makes: tests/unit/http/test_http_reader.py)."""

    async def scenario() -> None:
        async with serving(tmp_path) as server:
            answer = await exchange(server.path, data)
        answers = parse_responses(answer)
        assert answers, answer
        assert answers[0][0] == status
        assert "message" in json.loads(answers[0][2])

    asyncio.run(scenario())


def test_server_keeps_serving_after_garbage(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with serving(tmp_path) as server:
            for data in (b"\x00" * 5000, b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 3000, b"\r\n" * 100):
                refused = parse_responses(await exchange(server.path, data))
                assert [status for status, _, _ in refused] in ([400], [431])
            fine = await exchange(server.path, request_bytes("GET", f"/echo?{QUERY}"))
            assert parse_responses(fine)[0][0] == 200
            assert server.connection_count == 0

    asyncio.run(scenario())


def test_streaming_response_is_chunked_and_ends_with_the_generator(tmp_path: Path) -> None:
    closed = asyncio.Event

    async def scenario() -> None:
        finished = closed()

        async def lines() -> AsyncIterator[bytes]:
            try:
                for n in range(3):
                    yield f"line {n}\n".encode()
                    await asyncio.sleep(0.01)
            finally:
                finished.set()

        async def logs(request: ApiRequest) -> ApiResponse:
            return ApiResponse(stream=lines(), headers=(("Content-Type", "text/plain"),))

        router = make_router()
        router.add("GET", "/logs", logs)
        async with serving(tmp_path, router) as server:
            raw = await exchange(server.path, request_bytes("GET", f"/logs?{QUERY}"))
        assert b"transfer-encoding: chunked" in raw.lower()
        ((status, headers, body),) = parse_responses(raw)
        assert status == 200
        assert headers["content-type"] == "text/plain"
        assert body == b"line 0\nline 1\nline 2\n"
        assert finished.is_set()

    asyncio.run(scenario())


def test_client_hangup_ends_a_following_stream(tmp_path: Path) -> None:
    async def scenario() -> None:
        finished = asyncio.Event()

        async def forever() -> AsyncIterator[bytes]:
            try:
                yield b"first\n"
                await asyncio.Event().wait()
            finally:
                finished.set()

        async def follow(request: ApiRequest) -> ApiResponse:
            return ApiResponse(stream=forever())

        router = make_router()
        router.add("GET", "/follow", follow)
        async with serving(tmp_path, router) as server:
            reader, writer = await asyncio.open_unix_connection(server.path)
            writer.write(request_bytes("GET", f"/follow?{QUERY}"))
            assert b"first" in await asyncio.wait_for(reader.readuntil(b"first\n"), 5)
            writer.close()
            await writer.wait_closed()
            await asyncio.wait_for(finished.wait(), 5)
            await wait_until_async(
                lambda: server.connection_count == 0, timeout_s=5, what="the connection closed"
            )

    asyncio.run(scenario())


def test_too_many_connections_get_503(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with serving(tmp_path, max_connections=2) as server:
            held = [await asyncio.open_unix_connection(server.path) for _ in range(2)]
            await wait_until_async(
                lambda: server.connection_count == 2, timeout_s=5, what="two held connections"
            )
            answer = await exchange(server.path, request_bytes("GET", f"/echo?{QUERY}"))
            assert parse_responses(answer)[0][0] == 503
            for _, writer in held:
                writer.close()
                await writer.wait_closed()

    asyncio.run(scenario())


def test_socket_file_mode_stale_replacement_and_removal(tmp_path: Path) -> None:
    path = tmp_path / "run" / "mgmt.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    path.parent.mkdir()
    stale.bind(str(path))
    stale.close()  # a socket file nothing listens on: what a crashed daemon leaves

    async def scenario() -> None:
        server = ApiSocketServer(f"unix://{path}", make_router(), mode=0o600)
        async with server:
            info = path.lstat()
            assert stat.S_ISSOCK(info.st_mode)
            assert stat.S_IMODE(info.st_mode) == 0o600
            assert sorted(p.name for p in path.parent.iterdir()) == ["mgmt.sock"]
            second = ApiSocketServer(f"unix://{path}", make_router())
            with pytest.raises(DaemonError, match="another process is serving"):
                await second.start()
            assert path.exists()
        assert not path.exists()

    asyncio.run(scenario())


def test_default_mode_is_0660_and_group_is_applied(tmp_path: Path) -> None:
    path = tmp_path / "mgmt.sock"
    sock, socket_file = bind_unix_socket(str(path), group=str(os.getgid()))
    try:
        assert stat.S_IMODE(path.lstat().st_mode) == 0o660
        assert path.lstat().st_gid == os.getgid()
    finally:
        sock.close()
        socket_file.remove()
    assert not path.exists()


def test_socket_is_made_in_the_staging_directory_and_renamed_into_place(tmp_path: Path) -> None:
    staging = tmp_path / "staging"
    staging.mkdir(mode=0o700)
    target = tmp_path / "module" / "workload.sock"
    watched = []

    real_rename = os.rename

    def watching_rename(src, dst, *args, **kwargs):
        watched.append(sorted(p.name for p in target.parent.iterdir()))
        return real_rename(src, dst, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "rename", watching_rename)
        sock, socket_file = bind_unix_socket(str(target), mode=0o666, staging=staging)
    try:
        # Just before the rename the socket's own directory was still empty: nothing with a
        # temporary name (that a module could swap for a symlink) ever appeared in it.
        assert watched == [[]]
        info = target.lstat()
        assert stat.S_ISSOCK(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o666
        assert list(staging.iterdir()) == []
        assert sorted(p.name for p in target.parent.iterdir()) == ["workload.sock"]
    finally:
        sock.close()
        socket_file.remove()


def test_a_symlink_where_the_socket_goes_is_refused_and_its_target_untouched(
    tmp_path: Path,
) -> None:
    victim = tmp_path / "victim"
    victim.write_text("secret")
    victim.chmod(0o600)
    before = victim.stat()
    target = tmp_path / "module" / "workload.sock"
    target.parent.mkdir()
    target.symlink_to(victim)
    with pytest.raises(DaemonError, match="is not a socket"):
        bind_unix_socket(str(target), mode=0o666, staging=tmp_path)
    after = victim.stat()
    assert (after.st_mode, after.st_uid, after.st_gid) == (
        before.st_mode,
        before.st_uid,
        before.st_gid,
    )
    assert target.is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["module", "victim"], "staging left clean"


def test_replaced_socket_file_is_not_removed_at_stop(tmp_path: Path) -> None:
    path = tmp_path / "mgmt.sock"
    sock, socket_file = bind_unix_socket(str(path))
    sock.close()
    path.unlink()
    path.write_text("someone else's")
    socket_file.remove()
    assert path.read_text() == "someone else's"


def test_non_socket_file_and_bad_settings_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "mgmt.sock"
    path.write_text("not a socket")
    with pytest.raises(DaemonError, match="is not a socket"):
        bind_unix_socket(str(path))
    with pytest.raises(ConfigError, match="no group named"):
        bind_unix_socket(str(tmp_path / "x.sock"), group="no-such-group-here")
    with pytest.raises(ConfigError, match="absolute path"):
        parse_socket_uri("unix://relative.sock")
    with pytest.raises(ConfigError, match="unsupported socket URI"):
        parse_socket_uri("tcp://127.0.0.1:1")
    with pytest.raises(ConfigError, match="longer than"):
        parse_socket_uri("unix:///" + "x" * 200)


def test_service_binds_in_prepare_and_cleans_up_on_cancel(tmp_path: Path) -> None:
    listen = Listen(management_uri=f"unix://{tmp_path}/mgmt.sock", socket_mode=0o660)

    async def scenario() -> None:
        service = ApiServerService(listen, make_router())
        await service.prepare()
        assert (tmp_path / "mgmt.sock").exists()
        task = asyncio.create_task(service.run())
        answer = await exchange(str(tmp_path / "mgmt.sock"), request_bytes("GET", f"/echo?{QUERY}"))
        assert parse_responses(answer)[0][0] == 200
        assert service.describe()["sockets"] == [listen.management_uri]
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not (tmp_path / "mgmt.sock").exists()

    asyncio.run(scenario())


def test_refused_client_still_sending_gets_the_answer_not_a_reset(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with serving(tmp_path, max_body_bytes=1000) as server:
            body = b"z" * (2 * 1024 * 1024)
            answer = await exchange(server.path, request_bytes("PUT", f"/echo?{QUERY}", body))
        ((status, _, message),) = parse_responses(answer)
        assert status == 413
        assert b"larger than 1000 bytes" in message

    asyncio.run(scenario())


def test_socket_passed_by_systemd_is_served(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    listening = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listening.bind(str(tmp_path / "activated.sock"))
    listening.listen(8)
    fd = os.dup(listening.fileno())
    listening.close()
    count = fd - 3 + 1
    monkeypatch.setenv("LISTEN_PID", str(os.getpid()))
    monkeypatch.setenv("LISTEN_FDS", str(count))
    monkeypatch.setenv("LISTEN_FDNAMES", ":".join(["other"] * (count - 1) + ["mgmt"]))

    async def scenario() -> None:
        async with ApiSocketServer("fd://mgmt", make_router()) as server:
            assert server.path is None
            answer = await exchange(
                str(tmp_path / "activated.sock"), request_bytes("GET", f"/echo?{QUERY}")
            )
            assert parse_responses(answer)[0][0] == 200
        with pytest.raises(DaemonError, match="no socket named 'absent'"):
            await ApiSocketServer("fd://absent", make_router()).start()

    asyncio.run(scenario())
