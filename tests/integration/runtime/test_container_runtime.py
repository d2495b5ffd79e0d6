"""The `ContainerRuntime` conformance test: the unit tests' `FakeEngine` and `DockerEngine` on a
real dockerd must behave the same in everything the reconciler, the image collector and the status
read models rely on: lifecycle and states, label filters, events, logs, images, stats and errors.

Each behaviour runs once per backend. The commands are real shell for dockerd; for the fake, the
same commands are registered as `Program`s that write and exit as the shell would.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from firmware.errors import Conflict, EdgekeeperError, NotFound
from firmware.runtime.container import ContainerRuntime, RuntimeUnavailable
from firmware.runtime.engine import DockerEngine
from firmware.runtime.logstream import LogFrame, Stream
from firmware.runtime.status import NEVER, module_usage
from tests.peers.fake_engine import STOP_EXIT_CODE, FakeEngine, Program
from tests.peers.waiting import wait_until_async

SLEEP = ["sleep", "300"]
CHATTY = ["sh", "-c", "echo out; echo err >&2; exec sleep 300"]
CRASH = ["sh", "-c", "echo bye; exit 3"]
COUNT = ["sh", "-c", "for i in 1 2 3; do echo $i; sleep 0.2; done"]

PROGRAMS = {
    tuple(CHATTY): Program((LogFrame(Stream.STDOUT, b"out\n"), LogFrame(Stream.STDERR, b"err\n"))),
    tuple(CRASH): Program((LogFrame(Stream.STDOUT, b"bye\n"),), exit_code=3),
    tuple(COUNT): Program(
        tuple(LogFrame(Stream.STDOUT, f"{n}\n".encode()) for n in (1, 2, 3)),
        interval=0.2,
        exit_code=0,
    ),
}
FAKE_IMAGE = "edgekeeper-test/busybox:latest"


@dataclass
class Backend:
    """One `ContainerRuntime` under test and what the test needs around it."""

    runtime: ContainerRuntime
    image: str
    tag: Callable[[str, str], None]  # give an image one more tag
    unreachable: Callable[[], ContainerRuntime]  # a runtime whose engine cannot be reached


def _fake_backend() -> Backend:
    engine = FakeEngine()
    engine.add_image(FAKE_IMAGE)
    for command, program in PROGRAMS.items():
        engine.program(command, program)

    def unreachable() -> ContainerRuntime:
        engine.disconnect()
        return engine

    return Backend(engine, FAKE_IMAGE, engine.tag, unreachable)


@pytest.fixture(params=["fake", pytest.param("dockerd", marks=pytest.mark.docker)])
def backend(request: pytest.FixtureRequest, tmp_path: Any) -> Backend:
    if request.param == "fake":
        return _fake_backend()
    dockerd = request.getfixturevalue("sim_dockerd")
    image = request.getfixturevalue("busybox_image")
    return Backend(
        DockerEngine(str(dockerd.socket)),
        image,
        lambda source, tag: dockerd.docker("tag", source, tag),
        lambda: DockerEngine(str(tmp_path / "no-engine.sock")),
    )


class Containers:
    """Containers made by one test, all carrying its own label, removed at the end."""

    def __init__(self, backend: Backend) -> None:
        self.runtime = backend.runtime
        self.image = backend.image
        self.label = {"test.edgekeeper.conformance": uuid.uuid4().hex[:12]}
        self.made: list[str] = []

    async def create(
        self, command: Sequence[str], labels: dict[str, str] | None = None, name: str = ""
    ) -> str:
        body = {
            "Image": self.image,
            "Cmd": list(command),
            "Labels": {**self.label, **(labels or {})},
            "StopTimeout": 1,
            "HostConfig": {"NetworkMode": "none"},
        }
        container = await self.runtime.create_container(name or _unique("c"), body)
        self.made.append(container)
        return container

    async def remove_all(self) -> None:
        for container in self.made:
            with contextlib.suppress(NotFound):
                await self.runtime.remove(container, force=True)


@pytest.fixture
def containers(backend: Backend) -> Iterator[Containers]:
    made = Containers(backend)
    yield made
    asyncio.run(made.remove_all())


def _unique(prefix: str) -> str:
    return f"conf-{prefix}-{uuid.uuid4().hex[:8]}"


async def _state(runtime: ContainerRuntime, container: str) -> dict[str, Any]:
    return dict((await runtime.inspect(container))["State"])


async def _exited(runtime: ContainerRuntime, container: str) -> bool:
    return (
        not (await _state(runtime, container))["Running"]
        and (await _state(runtime, container))["FinishedAt"] != NEVER
    )


async def _collect(events: AsyncIterator[dict[str, Any]], until: Callable[[list], bool]) -> list:
    seen: list[dict[str, Any]] = []
    async for event in events:
        seen.append(event)
        if until(seen):
            return seen
    return seen


def test_version_and_negotiation(backend: Backend) -> None:
    async def scenario() -> None:
        chosen = await backend.runtime.negotiate()
        assert re.fullmatch(r"1\.4\d", chosen)
        version = await backend.runtime.version()
        assert version.version and re.fullmatch(r"1\.\d+", version.api_version)
        assert version.os == "linux" and version.arch

    asyncio.run(scenario())


def test_lifecycle_states_labels_and_inspect(backend: Backend, containers: Containers) -> None:
    runtime = backend.runtime

    async def scenario() -> None:
        name = _unique("life")
        first = await containers.create(SLEEP, {"role": "first"}, name=name)
        other = await containers.create(SLEEP, {"role": "other"})
        listed = await runtime.list_containers({**containers.label, "role": "first"})
        assert [c.container_id for c in listed] == [first]
        summary = listed[0]
        assert (summary.name, summary.state, summary.image) == (name, "created", backend.image)
        assert summary.labels["role"] == "first" and summary.image_id.startswith("sha256:")
        everything = {c.container_id for c in await runtime.list_containers(containers.label)}
        assert everything == {first, other}
        assert (await _state(runtime, first))["StartedAt"] == NEVER

        await runtime.start(first)
        await runtime.start(first)  # already running: left as it is
        state = await _state(runtime, first)
        assert state["Status"] == "running" and state["Running"] is True and state["Pid"] > 0
        assert state["StartedAt"] != NEVER
        (running,) = await runtime.list_containers({**containers.label, "role": "first"})
        assert running.state == "running" and running.status.startswith("Up")
        doc = await runtime.inspect(name)  # by name as well as by id
        assert doc["Id"] == first and doc["Config"]["Labels"]["role"] == "first"
        assert doc["Config"]["Cmd"] == SLEEP and doc["Config"]["Tty"] is False

        with pytest.raises(Conflict):
            await runtime.remove(first)
        await runtime.stop(first, grace=0)
        await runtime.stop(first, grace=0)  # already stopped: left as it is
        state = await _state(runtime, first)
        assert state["Status"] == "exited" and state["Running"] is False
        assert state["ExitCode"] == STOP_EXIT_CODE and state["FinishedAt"] != NEVER
        await runtime.remove(first)
        with pytest.raises(NotFound):
            await runtime.inspect(first)
        remaining = await runtime.list_containers(containers.label)
        assert [c.container_id for c in remaining] == [other]

    asyncio.run(scenario())


def test_a_crash_shows_its_exit_code_in_listing_and_inspect(
    backend: Backend, containers: Containers
) -> None:
    runtime = backend.runtime

    async def scenario() -> None:
        crasher = await containers.create(CRASH)
        await runtime.start(crasher)
        await wait_until_async(
            lambda: _exited(runtime, crasher), timeout_s=30, what="the crash to end"
        )
        (listed,) = await runtime.list_containers(containers.label)
        assert listed.state == "exited" and re.match(r"Exited \(3\) ", listed.status)
        assert (await _state(runtime, crasher))["ExitCode"] == 3
        await runtime.start(crasher)  # an exited container starts again, same id
        await wait_until_async(
            lambda: _exited(runtime, crasher), timeout_s=30, what="the second crash"
        )
        assert [c.container_id for c in await runtime.list_containers(containers.label)] == [
            crasher
        ]

    asyncio.run(scenario())


def test_events_for_labelled_containers_only(backend: Backend, containers: Containers) -> None:
    runtime = backend.runtime

    async def scenario() -> None:
        mine = {"test.edgekeeper.events": uuid.uuid4().hex[:8]}
        async with runtime.subscribe(mine) as events:
            stranger = await containers.create(CRASH)  # the test's label but not `mine`
            await runtime.start(stranger)
            crasher = await containers.create(CRASH, mine)
            await runtime.start(crasher)
            seen = await asyncio.wait_for(
                _collect(events, lambda s: s[-1]["Action"] == "die"), timeout=30
            )
        actions = [e["Action"] for e in seen]
        assert actions[:2] == ["create", "start"] and actions[-1] == "die"
        assert {e["id"] for e in seen} == {crasher}
        died = seen[-1]["Actor"]["Attributes"]
        assert died["exitCode"] == "3"
        assert died["test.edgekeeper.events"] == mine["test.edgekeeper.events"]

    asyncio.run(scenario())


def test_restart_stop_and_remove_events(backend: Backend, containers: Containers) -> None:
    runtime = backend.runtime

    async def scenario() -> None:
        async with runtime.subscribe(containers.label) as events:
            sleeper = await containers.create(SLEEP)
            await runtime.start(sleeper)
            started = (await _state(runtime, sleeper))["StartedAt"]
            await runtime.restart(sleeper, grace=0)
            restarted = await asyncio.wait_for(
                _collect(events, lambda s: s[-1]["Action"] == "restart"), timeout=30
            )
            state = await _state(runtime, sleeper)
            assert state["Running"] is True and state["StartedAt"] != started
            await runtime.stop(sleeper, grace=0)
            stopped = await asyncio.wait_for(
                _collect(events, lambda s: s[-1]["Action"] == "stop"), timeout=30
            )
            await runtime.remove(sleeper)
            removed = await asyncio.wait_for(
                _collect(events, lambda s: s[-1]["Action"] == "destroy"), timeout=30
            )
        actions = [e["Action"] for e in restarted]
        assert actions[:2] == ["create", "start"]
        after = actions[2:]
        assert after.index("die") < after.index("start") < after.index("restart")
        assert "die" in [e["Action"] for e in stopped]
        assert [e["Action"] for e in removed][-1] == "destroy"

    asyncio.run(scenario())


def test_logs_in_order_with_tail_since_timestamps_and_follow(
    backend: Backend, containers: Containers
) -> None:
    runtime = backend.runtime

    async def frames(container: str, **options: Any) -> list[LogFrame]:
        return [frame async for frame in runtime.logs(container, **options)]

    async def scenario() -> None:
        chatty = await containers.create(CHATTY)
        await runtime.start(chatty)

        async def both_lines() -> list[LogFrame] | None:
            found = await frames(chatty)
            return found if len(found) >= 2 else None

        written = await wait_until_async(both_lines, timeout_s=30, what="two log lines")
        assert {(f.stream, f.data) for f in written} == {
            (Stream.STDOUT, b"out\n"),
            (Stream.STDERR, b"err\n"),
        }
        assert len(await frames(chatty, tail=1)) == 1
        assert await frames(chatty, tail=0) == []
        assert await frames(chatty, since=2**31 - 1) == []
        for frame in await frames(chatty, timestamps=True):
            assert re.fullmatch(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z (out|err)\n", frame.data)

        counter = await containers.create(COUNT)
        await runtime.start(counter)
        followed = await asyncio.wait_for(frames(counter, follow=True), timeout=30)
        assert b"".join(f.data for f in followed) == b"1\n2\n3\n"

    asyncio.run(scenario())


def test_unknown_containers_and_conflicts(backend: Backend, containers: Containers) -> None:
    runtime = backend.runtime
    unknown = "0" * 64

    async def scenario() -> None:
        for call in (
            runtime.inspect(unknown),
            runtime.start(unknown),
            runtime.stop(unknown),
            runtime.restart(unknown),
            runtime.remove(unknown, force=True),
            runtime.stats(unknown),
            frames_of(runtime.logs(unknown)),
        ):
            with pytest.raises(NotFound):
                await call
        name = _unique("taken")
        await containers.create(SLEEP, name=name)
        with pytest.raises(Conflict):
            await containers.create(SLEEP, name=name)
        with pytest.raises(NotFound):
            await runtime.create_container(_unique("noimage"), {"Image": "no-such-image:1"})

    asyncio.run(scenario())


async def frames_of(stream: AsyncIterator[LogFrame]) -> list[LogFrame]:
    return [frame async for frame in stream]


def test_images_untag_and_refuse_removal_in_use(backend: Backend, containers: Containers) -> None:
    runtime = backend.runtime
    extra = f"edgekeeper-test/conformance:{uuid.uuid4().hex[:8]}"

    async def scenario() -> None:
        image = await runtime.inspect_image(backend.image)
        listed = {i["Id"]: i for i in await runtime.list_images()}
        assert backend.image in listed[image["Id"]]["RepoTags"]
        backend.tag(backend.image, extra)
        assert (await runtime.inspect_image(extra))["Id"] == image["Id"]
        await runtime.remove_image(extra)  # another tag remains: only untagged
        with pytest.raises(NotFound):
            await runtime.inspect_image(extra)
        assert (await runtime.inspect_image(backend.image))["Id"] == image["Id"]

        sleeper = await containers.create(SLEEP)
        await runtime.start(sleeper)
        with pytest.raises(Conflict):
            await runtime.remove_image(image["Id"])
        with pytest.raises(NotFound):
            await runtime.inspect_image("no-such-image:1")
        with pytest.raises(NotFound):
            await runtime.remove_image("no-such-image:1")

    asyncio.run(scenario())


def test_stats_of_a_running_container(backend: Backend, containers: Containers) -> None:
    runtime = backend.runtime

    async def scenario() -> None:
        sleeper = await containers.create(SLEEP)
        await runtime.start(sleeper)
        usage = module_usage("sleeper", await runtime.stats(sleeper))
        assert usage.memory_limit > 0 and usage.used_memory >= 0 and usage.used_cpu >= 0

    asyncio.run(scenario())


def test_a_failed_pull_is_an_engine_error(backend: Backend) -> None:
    async def scenario() -> None:
        with pytest.raises(EdgekeeperError) as caught:
            async for _ in backend.runtime.pull("registry.invalid/edgekeeper/nothing:1"):
                pass
        assert not isinstance(caught.value, RuntimeUnavailable)

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_an_unreachable_engine_is_runtime_unavailable(backend: Backend) -> None:
    runtime = backend.unreachable()

    async def scenario() -> None:
        with pytest.raises(RuntimeUnavailable, match="cannot be reached"):
            await runtime.negotiate()
        with pytest.raises(RuntimeUnavailable):
            await runtime.list_containers()

    asyncio.run(scenario())
