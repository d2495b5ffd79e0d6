"""`GET /modules/{name}/logs` as edgeAgent reads it: Docker's framed stream by default, parsed the
way edgeAgent's LogMessageParser does (an 8-byte header, stream 2 is stderr, a big-endian length
at offset 4); `format=text` and `format=json` for people; `since`/`until` in every form aziot-edged
accepts (unix seconds, RFC 3339, humantime durations). A reconciler supervises the in-memory
`FakeEngine`; tests/integration/runtime/test_module_log_frames.py does the same against dockerd."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware.api import versions
from firmware.api.management import logs
from firmware.api.model import ApiRequest, ApiResponse
from firmware.api.router import Router
from firmware.errors import BadRequest
from firmware.runtime.logstream import LogFrame, Stream
from tests.peers.edgeagent import log_messages
from tests.peers.fake_engine import FakeEngine, Program
from tests.peers.waiting import wait_until_async
from tests.unit.runtime.supervising import AGENT, agent_reconciler, supervising

OUTPUT = (LogFrame(Stream.STDOUT, b"one\ntwo\n"), LogFrame(Stream.STDERR, b"oops\n"))
# what edgeAgent recognises as the engine's timestamp at the start of a payload
DOCKER_TIMESTAMP = re.compile(rb"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{9}Z ")
NOW = 1_800_000_000.0


@dataclass
class Rig:
    router: Router
    engine: FakeEngine

    async def logs(self, **query: str) -> ApiResponse:
        query = {"api-version": versions.LATEST, **query}
        request = ApiRequest("GET", f"/modules/{AGENT}/logs", query=query, body=b"")
        return await self.router.dispatch(request)

    async def body(self, **query: str) -> bytes:
        answer = await self.logs(**query)
        assert answer.status == 200 and answer.stream is not None, answer.body
        return b"".join([chunk async for chunk in answer.stream])


def supervised(scenario: Callable[[Rig], Awaitable[None]]) -> Callable[[Path], None]:
    """Run `scenario(rig)` once the agent, a fake container writing OUTPUT, has written it."""

    def test(tmp_path: Path) -> None:
        engine = FakeEngine()
        engine.program(["agent"], Program(OUTPUT))
        reconciler = agent_reconciler(tmp_path, engine)
        router = Router()
        for method, pattern, handler in logs.routes(lambda: reconciler):
            router.add(method, pattern, handler)
        rig = Rig(router, engine)

        async def written() -> bool:
            answer = await rig.logs(format="json")
            return answer.status == 200 and len(answer.json()["lines"]) == 3  # type: ignore[index]

        async def run() -> None:
            async with supervising(reconciler):
                await wait_until_async(written, timeout_s=10, what="the agent's output")
                await asyncio.wait_for(scenario(rig), 30)

        asyncio.run(run())

    test.__name__ = scenario.__name__
    return test


@supervised
async def test_the_default_answer_is_dockers_framed_stream(rig: Rig) -> None:
    answer = await rig.logs()
    assert answer.content_type() == "text/plain"  # what aziot-edged names it
    assert answer.stream is not None
    wire = b"".join([chunk async for chunk in answer.stream])
    assert log_messages(wire) == [
        ("stdout", b"one\n"),
        ("stdout", b"two\n"),
        ("stderr", b"oops\n"),
    ]


@supervised
async def test_edge_agents_upload_query_gets_timestamped_frames(rig: Rig) -> None:
    # edgeAgent's GetModuleLogs: follow, since, until, timestamps (tail left out with all three)
    wire = await rig.body(
        follow="false",
        since="2020-01-01T00:00:00Z",
        until="2100-01-01T00:00:00Z",
        timestamps="true",
    )
    messages = log_messages(wire)
    assert [stream for stream, _ in messages] == ["stdout", "stdout", "stderr"]
    for _, payload in messages:
        assert DOCKER_TIMESTAMP.match(payload), payload
    assert [payload[31:] for _, payload in messages] == [b"one\n", b"two\n", b"oops\n"]


@supervised
async def test_until_bounds_the_lines(rig: Rig) -> None:
    assert log_messages(await rig.body(until="2100-01-01T00:00:00Z")) != []
    assert await rig.body(until="1700000000") == b""
    assert await rig.body(until="1 hour") == b""  # an hour ago: before the agent wrote
    assert log_messages(await rig.body(since="1 hour", tail="1")) == [("stderr", b"oops\n")]


@supervised
async def test_text_and_json_formats_are_demultiplexed(rig: Rig) -> None:
    text = await rig.logs(format="text")
    assert text.content_type() == "text/plain; charset=utf-8"
    assert await rig.body(format="text") == b"one\ntwo\noops\n"
    lines = (await rig.logs(format="json")).json()
    assert lines == {
        "lines": [
            {"stream": "stdout", "text": "one"},
            {"stream": "stdout", "text": "two"},
            {"stream": "stderr", "text": "oops"},
        ]
    }


@supervised
async def test_bad_format_and_until_are_refused_by_name(rig: Rig) -> None:
    unknown = await rig.logs(format="xml")
    assert unknown.status == 400 and "'format'" in unknown.json()["message"]  # type: ignore[index]
    late = await rig.logs(until="tomorrow")
    assert late.status == 400 and "'until'" in late.json()["message"]  # type: ignore[index]


@supervised
async def test_hanging_up_on_a_followed_framed_stream_ends_the_engine_stream(rig: Rig) -> None:
    answer = await rig.logs(follow="true")
    stream = answer.stream
    assert isinstance(stream, AsyncGenerator)
    assert log_messages(await anext(stream)) == [("stdout", b"one\n")]
    assert rig.engine.following == 1
    await stream.aclose()
    assert rig.engine.following == 0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1569600000", 1_569_600_000),
        ("0", 0),
        ("2019-09-27T16:00:00+00:00", 1_569_600_000),
        ("2019-09-27T16:00:00Z", 1_569_600_000),
        ("2019-09-27t16:00:00.123456789z", 1_569_600_000),
        ("2019-09-27T18:00:00+02:00", 1_569_600_000),
        ("10m", NOW - 600),
        ("90s", NOW - 90),
        ("1h", NOW - 3600),
        ("1 hour", NOW - 3600),
        ("1 hour 20 minutes", NOW - 4800),
        ("1h20m", NOW - 4800),
        ("1 hour 20m", NOW - 4800),
        ("1d", NOW - 86400),
        ("2 days", NOW - 172800),
        ("1week", NOW - 604800),
        ("1500ms", NOW - 2),  # whole seconds, rounded down as the clock is
    ],
)
def test_since_and_until_forms(text: str, expected: float) -> None:
    assert logs.parse_moment(text, "since", now=NOW) == int(expected)


@pytest.mark.parametrize("text", ["yesterday", "10 parsecs", "10m x", "m10", "-5", "1.5h", " "])
def test_unreadable_moments_name_the_parameter(text: str) -> None:
    with pytest.raises(BadRequest, match="'until'"):
        logs.parse_moment(text, "until", now=NOW)


@given(st.text(max_size=40))
def test_any_text_is_a_moment_or_a_bad_request(text: str) -> None:
    with contextlib.suppress(BadRequest):
        assert isinstance(logs.parse_moment(text, "since", now=NOW), int)
