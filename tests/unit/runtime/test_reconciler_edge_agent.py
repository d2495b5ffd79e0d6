"""What edgeAgent asks of the runtime: its own update over `[agent]`, prepare-update, registry
credentials in a module's settings, and the engine network every module joins."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import pytest

from firmware.errors import BadRequest, Conflict, EdgekeeperError
from firmware.runtime.admission import AdmissionPolicy
from firmware.runtime.container import EngineError
from firmware.runtime.desired import AGENT_DOCUMENT, DesiredModules
from firmware.runtime.elevation import protect
from firmware.runtime.reconciler import Reconciler
from firmware.runtime.spec import DesiredStatus, ModuleSpec, PullPolicy, RestartPolicy
from firmware.runtime.status import RuntimeStatus
from firmware.store.state import StateStore
from tests.peers.fake_engine import FakeEngine
from tests.peers.waiting import wait_until_async
from tests.unit.runtime.supervising import supervising

SLEEP = {"Cmd": ["sleep", "300"]}
AGENT = ModuleSpec("edgeAgent", "agent:1", create_options=SLEEP)
CREDENTIALS = {"username": "u", "password": "s3cret", "serveraddress": "registry.example"}


@pytest.fixture
def engine() -> FakeEngine:
    fake = FakeEngine()
    for tag in ("agent:1", "agent:2", "img:1"):
        fake.add_image(tag)
    return fake


def reconciler(engine: FakeEngine, store: StateStore, agent: ModuleSpec = AGENT, **kw: Any):
    return Reconciler(engine, DesiredModules(store), agent=agent, **kw)


async def agent_image(engine: FakeEngine) -> str | None:
    running = [c for c in engine.containers.values() if c.state == "running"]
    return next((c.image for c in running if c.name == "edgeAgent"), None)


def test_the_agent_updates_itself_and_the_update_outlives_a_restart(engine, tmp_path):
    store = StateStore(tmp_path)

    async def scenario() -> None:
        first = reconciler(engine, store)
        async with supervising(first):
            await wait_until_async(
                lambda: agent_image(engine), timeout_s=10, what="the agent from [agent]"
            )
            update = ModuleSpec(
                "edgeAgent",
                "agent:2",
                create_options=SLEEP,
                status=DesiredStatus.STOPPED,
                restart_policy=RestartPolicy.NEVER,
            )
            await first.put(update)
            assert first.spec("edgeAgent").image == "agent:2"
            # the agent is always wanted: an update cannot stop it or leave it unsupervised
            assert first.spec("edgeAgent").status is DesiredStatus.RUNNING
            assert first.spec("edgeAgent").restart_policy is RestartPolicy.ALWAYS

            async def updated() -> bool:
                return await agent_image(engine) == "agent:2"

            await wait_until_async(updated, timeout_s=10, what="the agent made from its update")
            with pytest.raises(Conflict):
                await first.set_status("edgeAgent", DesiredStatus.STOPPED)
        again = reconciler(engine, store)
        async with supervising(again):
            assert again.spec("edgeAgent").image == "agent:2"

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_a_changed_agent_section_wins_over_the_agents_own_update(engine, tmp_path):
    store = StateStore(tmp_path)

    async def scenario() -> None:
        first = reconciler(engine, store)
        async with supervising(first):
            await first.put(ModuleSpec("edgeAgent", "agent:2", create_options=SLEEP))
        assert store.get(AGENT_DOCUMENT) is not None
        edited = ModuleSpec("edgeAgent", "agent:1", create_options={"Cmd": ["sleep", "9"]})
        second = reconciler(engine, store, agent=edited)
        async with supervising(second):
            assert second.spec("edgeAgent") == edited
        assert store.get(AGENT_DOCUMENT) is None

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_an_agent_update_is_admitted_like_any_module(engine, tmp_path):
    strict = AdmissionPolicy(allow_elevated=False, protected=protect(["/etc"]))

    async def scenario() -> None:
        first = reconciler(engine, StateStore(tmp_path), admission=strict)
        async with supervising(first):
            with pytest.raises(BadRequest, match=r"settings\.createOptions\.HostConfig\.Binds"):
                await first.put(
                    ModuleSpec(
                        "edgeAgent",
                        "agent:2",
                        create_options={"HostConfig": {"Binds": ["/etc:/host-etc"]}},
                    )
                )
            assert first.spec("edgeAgent") == AGENT

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_prepare_pulls_the_image_and_changes_no_module(engine, tmp_path):
    engine.published.add("registry.example/sensor:2")

    async def scenario() -> None:
        first = reconciler(engine, StateStore(tmp_path))
        async with supervising(first):
            spec = ModuleSpec("sensor", "registry.example/sensor:2", registry_auth=CREDENTIALS)
            await first.prepare(spec)
            assert engine.pulls == [("registry.example/sensor:2", CREDENTIALS)]
            assert "sensor" not in first.modules()
            await first.prepare(spec)  # pulled again, as aziot-edged does: the tag may have moved
            assert len(engine.pulls) == 2
            never = ModuleSpec("other", "absent:1", pull_policy=PullPolicy.NEVER)
            await first.prepare(never)
            assert len(engine.pulls) == 2
            with pytest.raises(EdgekeeperError, match="pulling missing:1 failed"):
                await first.prepare(ModuleSpec("bad", "missing:1"))
            # offline, an image the gateway has is good enough
            await first.prepare(ModuleSpec("local", "img:1"))
            assert engine.pulls[-1][0] == "img:1"

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_a_modules_registry_credentials_are_used_for_its_pull(engine, tmp_path):
    engine.published.add("registry.example/filter:1")

    async def scenario() -> None:
        first = reconciler(engine, StateStore(tmp_path))
        async with supervising(first):
            await first.put(
                ModuleSpec(
                    "filter",
                    "registry.example/filter:1",
                    create_options=SLEEP,
                    registry_auth=CREDENTIALS,
                )
            )

            async def running() -> bool:
                (found,) = await first.statuses(["filter"])
                return found.runtime_status is RuntimeStatus.RUNNING

            await wait_until_async(running, timeout_s=10, what="the module pulled and running")
            assert ("registry.example/filter:1", CREDENTIALS) in engine.pulls

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_modules_join_the_engine_network_unless_they_choose_one(engine, tmp_path):
    async def scenario() -> None:
        first = reconciler(engine, StateStore(tmp_path), network="azure-iot-edge")
        async with supervising(first):
            await first.put(ModuleSpec("joins", "img:1", create_options=SLEEP))
            await first.put(
                ModuleSpec(
                    "own",
                    "img:1",
                    create_options={**SLEEP, "HostConfig": {"NetworkMode": "none"}},
                )
            )
            await wait_until_async(
                lambda: len(engine.containers) == 3, timeout_s=10, what="three containers"
            )
            assert engine.networks == {"azure-iot-edge"}
            modes = {
                c.name: c.body["HostConfig"].get("NetworkMode") for c in engine.containers.values()
            }
            network = "azure-iot-edge"
            assert modes == {"edgeAgent": network, "joins": network, "own": "none"}

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_a_module_that_is_never_restarted_starts_again_when_asked(engine, tmp_path):
    async def scenario() -> None:
        first = reconciler(engine, StateStore(tmp_path))
        async with supervising(first):
            # what edgeAgent creates: no status, no restart policy (created stopped, never
            # restarted by the runtime), then started, stopped and started again by edgeAgent
            spec = ModuleSpec.from_api(
                {"name": "m", "type": "docker", "config": {"settings": {"image": "img:1"}}}
            )
            await first.put(replace(spec, create_options=SLEEP))
            for wanted in (DesiredStatus.RUNNING, DesiredStatus.STOPPED, DesiredStatus.RUNNING):
                await first.set_status("m", wanted)
                shown = (
                    RuntimeStatus.RUNNING
                    if wanted is DesiredStatus.RUNNING
                    else RuntimeStatus.STOPPED
                )

                async def reached(shown: RuntimeStatus = shown) -> bool:
                    (found,) = await first.statuses(["m"])
                    return found.runtime_status is shown

                await wait_until_async(reached, timeout_s=10, what=f"m {shown.value}")

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_an_engine_that_cannot_make_the_network_still_runs_the_other_modules(
    engine, tmp_path, caplog
):
    async def refused(name: str) -> bool:
        raise EngineError("could not find an available, non-overlapping IPv4 address pool")

    engine.ensure_network = refused

    async def scenario() -> None:
        first = reconciler(engine, StateStore(tmp_path), network="azure-iot-edge")
        async with supervising(first):
            own = {**SLEEP, "HostConfig": {"NetworkMode": "none"}}
            await first.put(ModuleSpec("own", "img:1", create_options=own))

            async def running() -> bool:
                (found,) = await first.statuses(["own"])
                return found.runtime_status is RuntimeStatus.RUNNING

            await wait_until_async(running, timeout_s=10, what="the module on its own network")
            assert first.available

    asyncio.run(asyncio.wait_for(scenario(), 30))
    (logged,) = [r for r in caplog.records if r.getMessage() == "engine network cannot be made"]
    assert "address pool" in logged.fields["error"]  # type: ignore[attr-defined]
