"""Fuzzing the request reader in memory: whatever bytes arrive, split however, at whatever times,
it only ever yields requests, interim answers, waits, refusals with a 4xx (501 for a transfer
coding it does not speak) or a close, never another exception; and the bounds hold."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from firmware.http.reader import Closed, HttpRequest, Interim, NeedData, Refusal, RequestReader
from tests.unit.http.reader_driver import SMALL, Session, play, request_bytes

FUZZ = settings(max_examples=500, deadline=None)

REFUSALS = {400, 408, 413, 431, 501}

_TIMES = st.floats(min_value=0.0, max_value=20.0, allow_nan=False)


@st.composite
def pieces_of(draw: st.DrawFn, data: bytes) -> list[tuple[float, bytes]]:
    """`data` cut at random places, each piece arriving at a random (non-decreasing) time (no
    empty pieces: b"" is the client closing)."""
    cuts = sorted(draw(st.sets(st.integers(1, max(len(data) - 1, 1)), max_size=8)))
    times = sorted(draw(st.lists(_TIMES, min_size=len(cuts) + 1, max_size=len(cuts) + 1)))
    bounds = [0, *cuts, len(data)]
    pieces = [(times[i], data[bounds[i] : bounds[i + 1]]) for i in range(len(bounds) - 1)]
    return [(at, piece) for at, piece in pieces if piece]


def assert_well_behaved(session: Session) -> None:
    """Only the documented events, in a sane order, ending in a refusal or a close."""
    for event in session.events[:-1]:
        assert isinstance(event, (HttpRequest, Interim, NeedData)), event
    end = session.end
    assert isinstance(end, (Refusal, Closed)), end
    if isinstance(end, Refusal):
        assert end.status in REFUSALS, end
        assert end.message
    for request in session.requests:
        assert request.path.startswith("/")
        assert len(request.body) <= SMALL.max_body_bytes
        assert len(request.query) <= SMALL.max_query_fields
        assert all(name == name.lower() for name in request.headers)


@FUZZ
@given(data=st.binary(max_size=4096), times=st.data())
def test_arbitrary_bytes_at_arbitrary_times(data: bytes, times: st.DataObject) -> None:
    session = play(times.draw(pieces_of(data)), then=times.draw(_TIMES))
    assert_well_behaved(session)


_TOKEN = st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=8
)
_TEXT = st.one_of(
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=60),
    st.text(max_size=60),
)
_PATH = st.one_of(
    _TEXT,
    st.lists(st.sampled_from(["echo", "modules", "%2F", "%ff", "..", "", "a%20b", "{x}"])).map(
        "/".join
    ),
)
_QUERY = st.one_of(
    _TEXT,
    st.lists(st.sampled_from(["api-version=1", "a=%ff", "&", "=", "b", "c=d+e"])).map("&".join),
)


@FUZZ
@given(
    method=st.one_of(st.sampled_from(["GET", "POST", "PUT", "DELETE"]), _TOKEN),
    path=_PATH,
    query=_QUERY,
    headers=st.lists(st.tuples(_TOKEN, _TEXT), max_size=6),
    body=st.binary(max_size=3000),
    times=st.data(),
)
def test_request_shaped_input(
    method: str,
    path: str,
    query: str,
    headers: list[tuple[str, str]],
    body: bytes,
    times: st.DataObject,
) -> None:
    head = f"{method} /{path}?{query} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers)
    data = head.encode("utf-8", "surrogateescape") + b"\r\n" + body
    assert_well_behaved(play(times.draw(pieces_of(data))))


@FUZZ
@given(
    position=st.integers(min_value=0, max_value=200),
    noise=st.binary(min_size=1, max_size=16),
    replace=st.booleans(),
    times=st.data(),
)
def test_mutated_valid_request(
    position: int, noise: bytes, replace: bool, times: st.DataObject
) -> None:
    valid = request_bytes("POST", "/echo?api-version=1", b'{"a": 1}')
    position %= len(valid)
    tail = valid[position + len(noise) :] if replace else valid[position:]
    session = play(times.draw(pieces_of(valid[:position] + noise + tail)))
    assert_well_behaved(session)


@FUZZ
@given(size=st.integers(SMALL.max_body_bytes + 1, 3 * SMALL.max_body_bytes), chunked=st.booleans())
def test_any_body_over_the_bound_is_413(size: int, chunked: bool) -> None:
    if chunked:
        data = b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        data += f"{size:x}\r\n".encode() + b"b" * size + b"\r\n0\r\n\r\n"
    else:
        data = request_bytes("POST", "/up", b"b" * size)
    session = play([(0.0, data)])
    assert session.end == Refusal(413, f"request body is larger than {SMALL.max_body_bytes} bytes")
    assert not session.requests


@FUZZ
@given(extra=st.integers(1, 3000), times=st.data())
def test_any_head_over_the_bound_is_431(extra: int, times: st.DataObject) -> None:
    data = request_bytes("GET", "/a", extra=f"X-Pad: {'p' * (SMALL.max_header_bytes + extra)}\r\n")
    session = play([(0.0, piece) for _, piece in times.draw(pieces_of(data))])
    assert isinstance(session.end, Refusal)
    assert session.end.status == 431
    assert not session.requests


@FUZZ
@given(start=_TIMES, gaps=st.lists(st.floats(0.0, 1.0), min_size=2, max_size=10))
def test_a_request_finished_after_its_time_is_always_408(start: float, gaps: list[float]) -> None:
    data = request_bytes("GET", "/slow")
    size = -(-len(data) // len(gaps))
    pieces, now = [], start
    for i, gap in enumerate(gaps):
        pieces.append((now, data[i * size : (i + 1) * size]))
        now += gap
    if pieces[-1][0] - start < SMALL.request_timeout_s:
        pieces[-1] = (start + SMALL.request_timeout_s, pieces[-1][1])
    session = play(pieces)
    assert session.end == Refusal(408, "request not received in time")
    assert not session.requests


@FUZZ
@given(idle=st.floats(0.0, 100.0))
def test_an_idle_connection_waits_exactly_its_idle_time(idle: float) -> None:
    session = play([], close=False, then=idle)
    if idle >= SMALL.idle_timeout_s:
        assert session.end == Closed("idle")
    else:
        assert session.end == NeedData(until=SMALL.idle_timeout_s)


def _transcript(
    pieces: list[bytes], answer: tuple[int, list[tuple[str, str]], bool]
) -> list[object]:
    """What the reader says, and the bytes of the answers it frames, for `pieces` fed in order."""
    reader = RequestReader(SMALL)
    status, headers, close = answer
    said: list[object] = []

    def drain() -> bool:
        while True:
            event = reader.next_event(0.0)
            if isinstance(event, NeedData):
                return True
            said.append(event)
            if isinstance(event, HttpRequest):
                said.append(reader.answer(status, headers, event.body[:5], close=close))
            elif isinstance(event, (Refusal, Closed)):
                if isinstance(event, Refusal) and reader.can_answer:
                    said.append(reader.answer(event.status, [], b"{}", close=True))
                return False

    for piece in [*pieces, b""]:
        reader.feed(piece, 0.0)
        if not drain():
            break
    return said


_EXTRA_HEADERS = st.lists(
    st.sampled_from(
        [
            "X-A:  b c \r\n",
            "X-B:\r\n",
            "x-a: again\r\n",
            "Host: second\r\n",
            "Content-Length: 2\r\n",
            "Connection: close\r\n",
            "Connection: keep-alive\r\n",
            "Expect: 100-continue\r\n",
            "Upgrade: websocket\r\n",
            "Bad Name: x\r\n",
            "X-C: a\x01b\r\n",
            " folded\r\n",
        ]
    ),
    max_size=3,
)


@FUZZ
@given(
    requests=st.lists(
        st.tuples(
            st.sampled_from(["GET", "POST", "PUT", "DELETE", "HEAD", "PATCH"]),
            st.sampled_from(["/a?api-version=1", "/b", "/%ff?x=%ff", "/c?a=1&a=2", "*"]),
            st.binary(max_size=40),
            _EXTRA_HEADERS,
        ),
        min_size=1,
        max_size=3,
    ),
    status=st.sampled_from([200, 201, 204, 400, 404, 429, 500, 799]),
    headers=st.lists(
        st.sampled_from(
            [
                ("content-type", "application/json"),
                ("Retry-After", "3"),
                ("Allow", "GET, POST"),
                ("x-bad", "a\nb"),
            ]
        ),
        max_size=2,
    ),
    close=st.booleans(),
)
def test_requests_read_whole_or_byte_by_byte_are_read_and_answered_alike(
    requests: list[tuple[str, str, bytes, list[str]]],
    status: int,
    headers: list[tuple[str, str]],
    close: bool,
) -> None:
    """A request that arrives whole is read without h11 where it is a common one, one that
    trickles in byte by byte always by h11: what the server is told and what goes back to the
    client is the same."""
    data = b"".join(
        request_bytes(method, target, body, "".join(extra))
        for method, target, body, extra in requests
    )
    answer = (status, headers, close)
    try:
        whole = _transcript([data], answer)
    except Exception as error:  # h11 refuses to frame some answers: it must do so both ways
        whole = [type(error)]
    try:
        trickled = _transcript([data[i : i + 1] for i in range(len(data))], answer)
    except Exception as error:
        trickled = [type(error)]
    assert whole == trickled
