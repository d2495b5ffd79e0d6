"""The server's sans-IO request reader: requests, keep-alive, every bound and every refusal, on a
made-up clock, in memory."""

from __future__ import annotations

import h11
import pytest

from firmware.http.reader import (
    Closed,
    HttpRequest,
    Interim,
    NeedData,
    Refusal,
    RequestLimits,
    RequestReader,
)
from tests.unit.http.reader_driver import SMALL, play, request_bytes


def parse_answers(data: bytes, requests: int = 1) -> list[tuple[int, dict[str, str], bytes]]:
    """The answers in `data`, read as the client that sent `requests` GETs would."""
    client = h11.Connection(h11.CLIENT)
    answers: list[tuple[int, dict[str, str], bytes]] = []
    client.send(h11.Request(method="GET", target="/", headers=[("host", "x")]))
    client.send(h11.EndOfMessage())
    client.receive_data(data)
    status, headers, body = 0, {}, bytearray()
    while True:
        event = client.next_event()
        if isinstance(event, h11.Response):
            status, headers = event.status_code, {k.decode(): v.decode() for k, v in event.headers}
            body = bytearray()
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            answers.append((status, headers, bytes(body)))
            if len(answers) == requests or client.our_state is h11.MUST_CLOSE:
                return answers
            client.start_next_cycle()
            client.send(h11.Request(method="GET", target="/", headers=[("host", "x")]))
            client.send(h11.EndOfMessage())
        else:
            return answers


def test_a_request_comes_out_whole() -> None:
    data = request_bytes(
        "POST", "/modules/a%2Fb?api-version=1&x=a+b&empty=", b"{}", "X-Twice: 1\r\nx-twice: 2\r\n"
    )
    session = play([(0.0, data)])
    (request,) = session.requests
    assert request == HttpRequest(
        method="POST",
        path="/modules/a%2Fb",
        query={"api-version": "1", "x": "a b", "empty": ""},
        headers={"host": "x", "content-length": "2", "x-twice": "1, 2"},
        body=b"{}",
    )
    assert session.end == Closed("the client closed the connection")


def test_pipelined_and_chunked_requests_on_one_connection() -> None:
    chunked = (
        b"PUT /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    )
    session = play([(0.0, request_bytes("GET", "/a") + chunked[:30]), (0.5, chunked[30:])])
    assert [(r.method, r.path, r.body) for r in session.requests] == [
        ("GET", "/a", b""),
        ("PUT", "/b", b"abcde"),
    ]


def test_connection_close_ends_after_the_answer() -> None:
    session = play([(0.0, request_bytes("GET", "/a", extra="Connection: close\r\n"))], close=False)
    assert len(session.requests) == 1
    assert isinstance(session.end, Closed)


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET /echo HTTP/1.1\r\n\r\n", 400),  # no Host
        (b"GET /echo HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n", 400),
        (b"GET http://x/echo HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (b"GET * HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (b"GET /echo?a=%ff HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (b"GET /echo?" + b"&".join([b"a=1"] * 9) + b" HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (b"GET /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\nab", 400),  # then EOF
        (b"GET /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
        (b"GET /echo HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 3000 + b"\r\n\r\n", 431),
        (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2049\r\n\r\n", 413),
    ],
)
def test_malformed_or_oversized_requests_are_refused(data: bytes, status: int) -> None:
    session = play([(0.0, data)])
    assert not session.requests
    assert isinstance(session.end, Refusal)
    assert session.end.status == status
    assert session.end.message


def test_head_arriving_in_pieces_is_bounded_before_it_ends() -> None:
    pieces = [(0.0, b"GET / HTTP/1.1\r\nHost: x\r\n")] + [(0.0, b"X: " + b"a" * 100 + b"\r\n")] * 30
    session = play(pieces, close=False)
    assert session.end == Refusal(431, "malformed HTTP request: Receive buffer too long")


def test_chunked_body_over_the_bound_is_413_however_it_is_split() -> None:
    head = b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunk = b"400\r\n" + b"x" * 0x400 + b"\r\n"
    for split in (1, 7, len(chunk)):
        body = chunk * 3
        pieces = [(0.0, head)] + [(0.0, body[i : i + split]) for i in range(0, len(body), split)]
        session = play(pieces, close=False)
        assert session.end == Refusal(413, "request body is larger than 2048 bytes")


def test_body_at_the_bound_is_accepted() -> None:
    (request,) = play([(0.0, request_bytes("POST", "/up", b"y" * 2048))]).requests
    assert len(request.body) == 2048


def test_slow_client_is_refused_when_its_request_time_is_up() -> None:
    first = b"GET /slow HTTP/1.1\r\nHost:"
    session = play([(10.0, first), (11.0, b" x\r\n")], close=False)
    assert session.events[-1] == NeedData(until=12.0)  # 2 s from the first byte, not the last
    late = play([(10.0, first), (11.0, b" x\r\n")], close=False, then=12.0)
    assert late.end == Refusal(408, "request not received in time")


def test_request_finished_just_in_time_is_served() -> None:
    data = request_bytes("GET", "/ok")
    session = play([(1.0, data[:5]), (2.999, data[5:])], close=False)
    assert [r.path for r in session.requests] == ["/ok"]


def test_idle_connection_closes_after_the_idle_time() -> None:
    session = play([], close=False, then=4.9)
    assert session.end == NeedData(until=5.0)
    assert play([], close=False, then=5.0).end == Closed("idle")


def test_idle_time_starts_again_after_each_answer() -> None:
    session = play([(3.0, request_bytes("GET", "/a"))], close=False, then=7.9)
    assert session.end == NeedData(until=8.0)
    session = play([(3.0, request_bytes("GET", "/a"))], close=False, then=8.0)
    assert session.end == Closed("idle")


def test_pipelined_request_runs_on_request_time_not_idle_time() -> None:
    data = request_bytes("GET", "/a") + b"GET /b HTTP/1.1\r\n"
    session = play([(1.0, data)], close=False)
    assert session.end == NeedData(until=3.0)


def test_expect_100_continue_gets_an_interim_answer() -> None:
    reader = RequestReader(SMALL)
    reader.feed(
        b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n", 0.0
    )
    interim = reader.next_event(0.0)
    assert isinstance(interim, Interim)
    assert interim.data.startswith(b"HTTP/1.1 100 ")
    assert isinstance(reader.next_event(0.0), NeedData)
    reader.feed(b"ok", 0.1)
    request = reader.next_event(0.1)
    assert isinstance(request, HttpRequest)
    assert request.body == b"ok"


def test_answers_keep_the_connection_open_or_close_it() -> None:
    reader = RequestReader(SMALL)
    reader.feed(request_bytes("GET", "/a") + request_bytes("GET", "/b"), 0.0)
    assert isinstance(reader.next_event(0.0), HttpRequest)
    with pytest.raises(RuntimeError, match="answer the request"):
        reader.next_event(0.0)
    first = reader.answer(200, [("content-type", "text/plain")], b"one")
    second_request = reader.next_event(0.0)
    assert isinstance(second_request, HttpRequest)
    assert second_request.path == "/b"
    second = reader.answer(404, [], b"", close=True)
    assert reader.next_event(0.0) == Closed("answered; the connection closes")
    assert not reader.can_answer
    answers = parse_answers(first + second, requests=2)
    assert answers == [
        (200, {"content-type": "text/plain", "content-length": "3"}, b"one"),
        (404, {"content-length": "0", "connection": "close"}, b""),
    ]


def test_streamed_answer_is_chunked_and_ends_the_connection() -> None:
    reader = RequestReader(SMALL)
    reader.feed(request_bytes("GET", "/logs"), 0.0)
    assert isinstance(reader.next_event(0.0), HttpRequest)
    data = reader.start_answer(200, [("content-type", "text/plain")])
    data += reader.answer_chunk(b"line 1\n") + reader.answer_chunk(b"") + reader.answer_chunk(b"2")
    data += reader.end_answer()
    assert b"transfer-encoding: chunked" in data.lower()
    ((status, headers, body),) = parse_answers(data)
    assert (status, headers["connection"], body) == (200, "close", b"line 1\n2")
    assert isinstance(reader.next_event(0.0), Closed)


def test_refusal_can_still_be_answered_and_nothing_more_is_read() -> None:
    reader = RequestReader(RequestLimits(max_body_bytes=1))
    reader.feed(request_bytes("POST", "/up", b"toolong"), 0.0)
    assert reader.next_event(0.0) == Refusal(413, "request body is larger than 1 bytes")
    assert reader.can_answer
    ((status, headers, _),) = parse_answers(reader.answer(413, [], b"{}", close=True))
    assert (status, headers["connection"]) == (413, "close")
    reader.feed(request_bytes("GET", "/more"), 0.1)
    assert isinstance(reader.next_event(0.1), Closed)
