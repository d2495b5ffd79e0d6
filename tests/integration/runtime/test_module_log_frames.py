"""Module logs against a real dockerd, as edgeAgent asks for and reads them: `edgekeeper run` (the
`gateway` fixture) runs a module that writes to stdout and to stderr; the management API's
default answer is Docker's framed stream, split and read here the way edgeAgent's LogsProcessor
and LogMessageParser do (8-byte header, stream 2 is stderr, big-endian length at offset 4), and
with `timestamps=true` each payload opens with the engine's timestamp in the form edgeAgent's
parser recognises. `since`/`until` take the forms edgeAgent forwards from its direct method."""

from __future__ import annotations

import asyncio
import datetime
import re
import time
import uuid

import pytest

from tests.peers.edgeagent import log_messages
from tests.peers.gateway import Gateway
from tests.peers.waiting import wait_until

pytestmark = pytest.mark.docker

# what edgeAgent recognises as the engine's timestamp at the start of a payload
DOCKER_TIMESTAMP = re.compile(rb"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{9}Z ")
TALK = "echo out-1; echo err-1 >&2; echo out-2; exec sleep 3600"


def logs(gw: Gateway, name: str, **query: str) -> bytes:
    """The whole answer body of `GET /modules/{name}/logs` with `query`."""

    async def read() -> bytes:
        chunks = [
            chunk async for chunk in gw.client().stream("GET", f"/modules/{name}/logs", query)
        ]
        return b"".join(chunks)

    return asyncio.run(asyncio.wait_for(read(), 30))


def rfc3339(moment: float) -> str:
    return datetime.datetime.fromtimestamp(moment, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_module_logs_are_framed_as_edge_agent_reads_them(gateway, client_image: str) -> None:
    gw = gateway()
    name = f"talker{uuid.uuid4().hex[:6]}"
    gw.deploy(
        name,
        client_image,
        {"Cmd": ["sh", "-c", TALK], "StopTimeout": 1, "HostConfig": {"NetworkMode": "none"}},
    )
    gw.container_of(name)  # waits until it runs
    wait_until(
        lambda: len(log_messages(logs(gw, name, follow="false"))) == 3,
        timeout_s=60,
        what=f"{name}'s three lines",
    )

    # edgeAgent's GetModuleLogs for an upload: follow, since, until, timestamps, no tail
    wire = logs(
        gw, name, follow="false", since="10m", until=rfc3339(time.time() + 60), timestamps="true"
    )
    messages = log_messages(wire)
    for _, payload in messages:
        assert DOCKER_TIMESTAMP.match(payload), payload
    texts = [(stream, payload[31:]) for stream, payload in messages]
    assert [text for stream, text in texts if stream == "stdout"] == [b"out-1\n", b"out-2\n"]
    assert [text for stream, text in texts if stream == "stderr"] == [b"err-1\n"]

    # without timestamps the payload is the line as written; tail counts lines
    assert log_messages(logs(gw, name, tail="1")) in (
        [("stdout", b"out-2\n")],
        [("stderr", b"err-1\n")],  # the engine copies the two streams concurrently
    )
    assert logs(gw, name, until=str(int(time.time()) - 3600)) == b""
    assert logs(gw, name, since="1 hour", format="text").count(b"\n") == 3
