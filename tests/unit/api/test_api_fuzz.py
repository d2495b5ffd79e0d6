"""Fuzzing the server's receive path: whatever bytes arrive, the answer is a 4xx (or, for a
well-formed request, whatever the router says, never a 5xx) or a closed connection, nothing is
logged as an internal error, and the server keeps serving."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware.api.server import ApiSocketServer, ServerLimits
from tests.unit.api.apiserver_harness import QUERY, make_router, parse_responses, request_bytes

FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


_ERRORS = _Errors()


@pytest.fixture(scope="module")
def server_path(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    directory: Path = tmp_path_factory.mktemp("fuzz")
    limits = ServerLimits(max_body_bytes=2048, max_header_bytes=2048, request_timeout_s=2.0)
    server = ApiSocketServer(f"unix://{directory}/mgmt.sock", make_router(), limits=limits)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    errors = _ERRORS
    logger = logging.getLogger("edgekeeper.api")
    logger.addHandler(errors)
    thread.start()
    asyncio.run_coroutine_threadsafe(server.start(), loop).result(10)
    try:
        yield str(server.path)
    finally:
        asyncio.run_coroutine_threadsafe(server.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        logger.removeHandler(errors)
    assert not errors.records, [r.getMessage() for r in errors.records]


def send(path: str, data: bytes) -> bytes:
    """Send `data`, half-close, read until the server closes (a reset counts as closed); fails
    if the server logged an internal error meanwhile (it logs before it closes)."""
    try:
        return _send(path, data)
    finally:
        logged = [record.getMessage() for record in _ERRORS.records]
        _ERRORS.records.clear()
        assert not logged, (logged, data[:200])


def _send(path: str, data: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(path)
        received = bytearray()
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
            while chunk := sock.recv(65536):
                received += chunk
        except (BrokenPipeError, ConnectionResetError):
            pass
        return bytes(received)


def assert_refused_or_closed(answer: bytes, *, allow_success: bool = False) -> None:
    if not answer:
        return
    assert answer.startswith(b"HTTP/1.1 "), answer[:80]
    responses = parse_responses(answer)
    assert responses, answer[:200]
    for status, _, _ in responses:
        assert status < 500, answer[:200]
        assert allow_success or 400 <= status < 500, answer[:200]


def assert_still_serving(path: str) -> None:
    ((status, _, _),) = parse_responses(send(path, request_bytes("GET", f"/echo?{QUERY}")))
    assert status == 200


@FUZZ
@given(data=st.binary(max_size=4096))
def test_arbitrary_bytes(server_path: str, data: bytes) -> None:
    assert_refused_or_closed(send(server_path, data))


_TOKEN = st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=8
)
_ASCII = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=60)
_TEXT = st.one_of(_ASCII, st.text(max_size=60))
_VISIBLE = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=80)
_PATH = st.one_of(
    _VISIBLE,
    _TEXT,
    st.lists(st.sampled_from(["echo", "modules", "%2F", "%ff", "..", "", "a%20b", "{x}"])).map(
        "/".join
    ),
)
_QUERY = st.one_of(
    _VISIBLE,
    _TEXT,
    st.lists(st.sampled_from([QUERY, "api-version=", "api-version=x", "a=%ff", "&", "=", "b"])).map(
        "&".join
    ),
)


@FUZZ
@given(
    method=st.one_of(st.sampled_from(["GET", "POST", "PUT", "DELETE"]), _TOKEN),
    path=_PATH,
    query=_QUERY,
    headers=st.lists(st.tuples(_TOKEN, _TEXT), max_size=6),
    body=st.binary(max_size=3000),
)
def test_request_shaped_input(
    server_path: str,
    method: str,
    path: str,
    query: str,
    headers: list[tuple[str, str]],
    body: bytes,
) -> None:
    head = f"{method} /{path}?{query} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers)
    data = head.encode("utf-8", "surrogateescape") + b"\r\n" + body
    assert_refused_or_closed(send(server_path, data), allow_success=True)


@FUZZ
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]),
    path=st.one_of(_VISIBLE, _PATH),
    query=_QUERY,
)
def test_request_target(server_path: str, method: str, path: str, query: str) -> None:
    target = f"/{path}?{query}".encode("utf-8", "surrogateescape")
    data = method.encode() + b" " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    assert_refused_or_closed(send(server_path, data), allow_success=True)


@FUZZ
@given(
    position=st.integers(min_value=0, max_value=200),
    noise=st.binary(min_size=1, max_size=16),
    replace=st.booleans(),
)
def test_mutated_valid_request(
    server_path: str, position: int, noise: bytes, replace: bool
) -> None:
    valid = request_bytes("POST", f"/echo?{QUERY}", b'{"a": 1}')
    position %= len(valid)
    tail = valid[position + len(noise) :] if replace else valid[position:]
    mutated = valid[:position] + noise + tail
    assert_refused_or_closed(send(server_path, mutated), allow_success=True)


def test_server_survives_the_fuzzing(server_path: str) -> None:
    for data in (b"\x00" * 5000, b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 1000, b"\r\n" * 100):
        assert_refused_or_closed(send(server_path, data))
    assert_still_serving(server_path)
