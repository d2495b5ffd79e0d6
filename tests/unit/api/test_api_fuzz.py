"""Fuzzing the local API's receive path in memory: whatever bytes arrive, the request reader
refuses them with a 4xx (501 for a transfer coding it does not speak) or hands the router requests
it answers without a 5xx, and nothing is logged as an internal error. The reader's own fuzz, with
clocks and splits, is tests/unit/http/test_http_reader_fuzz.py; the server's socket behaviour is
tests/unit/api/test_api_server.py."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware.api.model import ApiRequest
from firmware.api.router import Router
from firmware.api.server import ServerLimits
from firmware.http.reader import Closed, HttpRequest, Interim, Refusal, RequestReader
from tests.unit.api.apiserver_harness import QUERY, make_router, request_bytes

FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

LIMITS = ServerLimits(max_body_bytes=2048, max_header_bytes=2048, request_timeout_s=2.0)
REFUSALS = {400, 408, 413, 431, 501}


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def errors() -> Iterator[_Errors]:
    handler = _Errors()
    logger = logging.getLogger("edgekeeper.api")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def answered(data: bytes, router: Router, errors: _Errors) -> list[int]:
    """The statuses the API answers `data` with, from a client that closes after sending it."""
    reader = RequestReader(LIMITS)
    reader.feed(data, 0.0)
    reader.feed(b"", 0.0)
    statuses: list[int] = []

    async def serve() -> None:
        while True:
            event = reader.next_event(0.0)
            if isinstance(event, HttpRequest):
                response = await router.dispatch(
                    ApiRequest(
                        method=event.method,
                        path=event.path,
                        query=event.query,
                        headers=event.headers,
                        body=event.body,
                    )
                )
                statuses.append(response.status)
                reader.answer(response.status, [], response.encoded_body())
            elif isinstance(event, Refusal):
                statuses.append(event.status)
                assert event.status in REFUSALS, event
                return
            else:
                # The client has closed: nothing can be waited for any more.
                assert isinstance(event, (Interim, Closed)), event
                if isinstance(event, Closed):
                    return

    asyncio.run(serve())
    logged = [record.getMessage() for record in errors.records]
    errors.records.clear()
    assert not logged, (logged, data[:200])
    return statuses


def assert_refused_or_served(statuses: list[int], *, allow_success: bool = False) -> None:
    for status in statuses:
        assert status < 500 or status == 501, statuses
        assert allow_success or status >= 400, statuses


ROUTER = make_router()


@FUZZ
@given(data=st.binary(max_size=4096))
def test_arbitrary_bytes(errors: _Errors, data: bytes) -> None:
    assert_refused_or_served(answered(data, ROUTER, errors))


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
    errors: _Errors,
    method: str,
    path: str,
    query: str,
    headers: list[tuple[str, str]],
    body: bytes,
) -> None:
    head = f"{method} /{path}?{query} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers)
    data = head.encode("utf-8", "surrogateescape") + b"\r\n" + body
    assert_refused_or_served(answered(data, ROUTER, errors), allow_success=True)


@FUZZ
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]),
    path=st.one_of(_VISIBLE, _PATH),
    query=_QUERY,
)
def test_request_target(errors: _Errors, method: str, path: str, query: str) -> None:
    target = f"/{path}?{query}".encode("utf-8", "surrogateescape")
    data = method.encode() + b" " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    assert_refused_or_served(answered(data, ROUTER, errors), allow_success=True)


@FUZZ
@given(
    position=st.integers(min_value=0, max_value=200),
    noise=st.binary(min_size=1, max_size=16),
    replace=st.booleans(),
)
def test_mutated_valid_request(errors: _Errors, position: int, noise: bytes, replace: bool) -> None:
    valid = request_bytes("POST", f"/echo?{QUERY}", b'{"a": 1}')
    position %= len(valid)
    tail = valid[position + len(noise) :] if replace else valid[position:]
    mutated = valid[:position] + noise + tail
    assert_refused_or_served(answered(mutated, ROUTER, errors), allow_success=True)


def test_valid_requests_are_served_and_garbage_refused(errors: _Errors) -> None:
    valid = request_bytes("POST", f"/echo?{QUERY}", b"{}")
    assert answered(valid + valid, ROUTER, errors) == [200, 200]
    assert answered(b"\x00" * 5000, ROUTER, errors) == [400]
    assert answered(b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 1000, ROUTER, errors) == [431]
    assert answered(b"\r\n" * 100, ROUTER, errors) == [400]
