"""The reconciler against the in-memory engine: one `ModuleState` per module, what it counts and
forgets, and the read models it answers."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from firmware.errors import NotFound
from firmware.runtime.backoff import BackoffPolicy
from firmware.runtime.desired import DesiredModules
from firmware.runtime.reconciler import ModuleIssue, ModuleState, Reconciler
from firmware.runtime.spec import ModuleSpec, PullPolicy, RestartPolicy
from firmware.runtime.status import RuntimeStatus
from firmware.store.state import StateStore
from tests.peers.fake_engine import FakeEngine, Program
from tests.peers.waiting import wait_until_async
from tests.unit.runtime.supervising import supervising

SLEEP = ["sleep", "300"]
CRASH = ["sh", "-c", "exit 3"]
LONG = BackoffPolicy(initial=60.0)


def spec(name: str, command: list[str], **kw: Any) -> ModuleSpec:
    return ModuleSpec(name, "img:1", create_options={"Cmd": command}, **kw)


class Removals:
    """A module hook that records the modules cleaned up after."""

    def __init__(self) -> None:
        self.removed: list[str] = []

    async def before_create(self, spec: ModuleSpec, body: dict[str, Any]) -> None:
        return None

    async def after_remove(self, module_name: str) -> None:
        self.removed.append(module_name)


@pytest.fixture
def engine() -> FakeEngine:
    fake = FakeEngine()
    fake.add_image("img:1")
    fake.program(CRASH, Program(exit_code=3))
    return fake


async def status(reconciler: Reconciler, name: str) -> RuntimeStatus:
    (found,) = await reconciler.statuses([name])
    return found.runtime_status


def test_module_state_fresh_start_and_note():
    state = ModuleState()
    assert state.note() == ""
    state.issue = ModuleIssue("create failed", 0.0)
    state.restarts.stopped(100.0, BackoffPolicy())
    assert state.note() == "create failed"
    state.activity = "pulling img:1: 0/2 layers"
    assert state.note() == "pulling img:1: 0/2 layers"
    state.fresh_start()
    assert state.issue is None and state.restarts.failures == 0
    assert state.activity == "pulling img:1: 0/2 layers"  # a pull under way goes on


def test_a_crash_is_counted_and_a_changed_spec_starts_afresh(engine, tmp_path):
    reconciler = Reconciler(engine, DesiredModules(StateStore(tmp_path)), policy=LONG)

    async def scenario() -> None:
        async with supervising(reconciler):
            await reconciler.put(spec("c", CRASH))

            async def backing_off() -> bool:
                return await status(reconciler, "c") is RuntimeStatus.BACKOFF

            await wait_until_async(backing_off, timeout_s=10, what="the crash")
            (crashed,) = await reconciler.statuses(["c"])
            assert crashed.restart_count == 1 and crashed.exit_code == 3
            assert crashed.description == "exited with code 3; next start in 60 s"

            await reconciler.put(spec("c", SLEEP))

            async def running() -> bool:
                return await status(reconciler, "c") is RuntimeStatus.RUNNING

            await wait_until_async(running, timeout_s=10, what="the new spec to run")
            (changed,) = await reconciler.statuses(["c"])
            assert changed.restart_count == 0 and changed.container_id != crashed.container_id

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_a_removed_module_is_cleaned_up_once_and_forgotten(engine, tmp_path):
    hook = Removals()
    reconciler = Reconciler(
        engine, DesiredModules(StateStore(tmp_path)), policy=LONG, hooks=(hook,)
    )

    async def scenario() -> None:
        async with supervising(reconciler):
            await reconciler.apply({"a": spec("a", SLEEP), "b": spec("b", SLEEP)})

            async def both_run() -> bool:
                found = await reconciler.statuses()
                return [s.runtime_status for s in found] == [RuntimeStatus.RUNNING] * 2

            await wait_until_async(both_run, timeout_s=10, what="both modules running")
            await reconciler.delete("a")
            await wait_until_async(
                lambda: hook.removed, timeout_s=10, what="the clean-up after module a"
            )
            assert [c.name for c in await engine.list_containers()] == ["b"]
            await reconciler.put(spec("c", SLEEP))
            await wait_until_async(
                lambda: len(engine.containers) == 2, timeout_s=10, what="module c's container"
            )
            assert hook.removed == ["a"]
            assert reconciler.issue("a") is None
            with pytest.raises(NotFound):
                await reconciler.statuses(["a"])

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_read_models_running_container_summary_usage_and_logs(engine, tmp_path):
    reconciler = Reconciler(engine, DesiredModules(StateStore(tmp_path)), policy=LONG)
    missing = ModuleSpec("gone", "img:2", pull_policy=PullPolicy.NEVER)

    async def scenario() -> None:
        async with supervising(reconciler):
            assert await reconciler.running_container("nope") is None
            await reconciler.apply(
                {
                    "up": spec("up", SLEEP),
                    "gone": missing,
                    "once": spec("once", CRASH, restart_policy=RestartPolicy.NEVER),
                }
            )

            async def up_runs() -> Any:
                return await reconciler.running_container("up")

            running = await wait_until_async(up_runs, timeout_s=10, what="module up running")
            doc = await engine.inspect(running.container_id)
            assert running.pid == doc["State"]["Pid"] > 0

            async def gone_reported() -> bool:
                return reconciler.issue("gone") is not None

            await wait_until_async(gone_reported, timeout_s=10, what="the missing image")
            assert 'imagePullPolicy is "never"' in reconciler.issue("gone").message
            assert await reconciler.running_container("gone") is None
            with pytest.raises(NotFound, match="no container yet"):
                await reconciler.logs("gone")

            async def once_exited() -> bool:
                return await status(reconciler, "once") is RuntimeStatus.BACKOFF

            await wait_until_async(once_exited, timeout_s=10, what="module once to exit")
            assert await reconciler.running_container("once") is None

            summary = await reconciler.summary()
            assert summary.reachable and summary.version is not None
            assert summary.modules == 3 and summary.degraded is None
            assert dict(summary.by_status) == {
                RuntimeStatus.UNKNOWN: 1,
                RuntimeStatus.BACKOFF: 1,
                RuntimeStatus.RUNNING: 1,
            }
            assert [u.name for u in await reconciler.usage()] == ["up"]
            assert [f async for f in await reconciler.logs("up", tail=1)] == []

            engine.disconnect()
            lost = await reconciler.summary()
            assert not lost.reachable and lost.version is None
            assert "cannot be reached" in (lost.error or "")

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_recreate_all_waits_for_an_engine_that_is_down_then_recreates_every_container(
    engine, tmp_path
):
    reconciler = Reconciler(engine, DesiredModules(StateStore(tmp_path)), policy=LONG)

    async def container_of(name: str) -> str | None:
        running = await reconciler.running_container(name)
        return None if running is None else running.container_id

    async def scenario() -> None:
        async with supervising(reconciler):
            await reconciler.put(spec("a", SLEEP))
            first = await wait_until_async(lambda: container_of("a"), timeout_s=10, what="a")
            engine.disconnect()
            reconciler.recreate_all("the device moved to another hub")
            engine.reconnect()
            again = await wait_until_async(
                lambda: _other(container_of("a"), first), timeout_s=30, what="a recreated"
            )
            assert again != first

    asyncio.run(scenario())


async def _other(found, previous: str) -> str | None:
    current = await found
    return current if current not in (None, previous) else None
