"""The Docker Engine client against a real private dockerd."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from firmware.errors import Conflict, NotFound
from firmware.runtime.container import RuntimeUnavailable
from firmware.runtime.engine import DockerEngine
from firmware.runtime.logstream import Stream
from tests.peers.waiting import wait_until_async

pytestmark = pytest.mark.docker


def run(coro):
    return asyncio.run(coro)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_negotiates_a_version_the_engine_speaks(sim_dockerd):
    engine = DockerEngine(str(sim_dockerd.socket))
    chosen = run(engine.negotiate())
    major, minor = (int(p) for p in chosen.split("."))
    assert (major, minor) >= (1, 40)
    assert run(engine.version()).api_version


def test_container_lifecycle_with_labels_and_demuxed_logs(sim_dockerd, busybox_image):
    engine = DockerEngine(str(sim_dockerd.socket))
    name = unique("lifecycle")
    label = {"test.edgekeeper": name}
    body = {
        "Image": busybox_image,
        "Cmd": ["sh", "-c", "echo out; echo err >&2; exec sleep 300"],
        "Labels": label,
        "HostConfig": {"NetworkMode": "none"},
    }

    async def scenario():
        cid = await engine.create_container(name, body)
        listed = await engine.list_containers(label)
        assert [c.container_id for c in listed] == [cid]
        assert listed[0].name == name and listed[0].state == "created"
        await engine.start(cid)

        async def both_lines():
            found = [f async for f in engine.logs(cid)]
            return found if len(found) >= 2 else None

        frames = await wait_until_async(both_lines, timeout_s=10, what="two log lines")
        assert {(f.stream, f.data) for f in frames} == {
            (Stream.STDOUT, b"out\n"),
            (Stream.STDERR, b"err\n"),
        }
        assert (await engine.inspect(cid))["State"]["Running"] is True
        with pytest.raises(Conflict):
            await engine.remove(cid)
        await engine.stop(cid, grace=0)
        assert (await engine.inspect(cid))["State"]["Running"] is False
        await engine.remove(cid)
        with pytest.raises(NotFound):
            await engine.inspect(cid)

    run(scenario())


def test_events_stream_reports_container_start_and_die(sim_dockerd, busybox_image):
    engine = DockerEngine(str(sim_dockerd.socket))
    name = unique("events")
    label = {"test.edgekeeper": name}

    async def scenario():
        seen: list[str] = []

        async def watch(events):
            async for event in events:
                seen.append(event["Action"])
                if event["Action"] == "die":
                    return

        async with engine.subscribe(label) as events:
            cid = await engine.create_container(
                name, {"Image": busybox_image, "Cmd": ["true"], "Labels": label}
            )
            await engine.start(cid)
            await asyncio.wait_for(watch(events), 30)
        assert await engine.wait(cid) == 0
        await engine.remove(cid)
        return seen

    seen = run(scenario())
    assert "start" in seen and seen[-1] == "die"


def test_follow_streams_new_lines_as_they_come(sim_dockerd, busybox_image):
    engine = DockerEngine(str(sim_dockerd.socket))
    name = unique("follow")

    async def scenario():
        cid = await engine.create_container(
            name,
            {
                "Image": busybox_image,
                "Cmd": ["sh", "-c", "for i in 1 2 3; do echo $i; sleep 0.2; done"],
            },
        )
        await engine.start(cid)
        lines = [f.data async for f in engine.logs(cid, follow=True)]
        await engine.remove(cid, force=True)
        return lines

    assert b"".join(run(scenario())) == b"1\n2\n3\n"


def test_missing_socket_is_runtime_unavailable(tmp_path):
    engine = DockerEngine(str(tmp_path / "nothing.sock"))
    with pytest.raises(RuntimeUnavailable, match=r"nothing\.sock") as caught:
        run(engine.ping())
    assert "dockerd" in caught.value.render()


def test_unknown_image_is_not_found(sim_dockerd):
    engine = DockerEngine(str(sim_dockerd.socket))
    with pytest.raises(NotFound):
        run(engine.create_container(unique("noimage"), {"Image": "no-such-image:1"}))
