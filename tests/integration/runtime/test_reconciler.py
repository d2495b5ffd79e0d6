"""Module supervision against a real dockerd: back-off, watchdog, adoption, recovery."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from firmware.runtime.backoff import BackoffPolicy
from firmware.runtime.desired import DesiredModules
from firmware.runtime.engine import DockerEngine
from firmware.runtime.reconciler import Reconciler
from firmware.runtime.spec import (
    MODULE_LABEL,
    DesiredStatus,
    ModuleSpec,
    PullPolicy,
    RestartPolicy,
)
from firmware.runtime.status import RuntimeStatus
from firmware.store.state import StateStore
from tests.peers.sim import Dockerd
from tests.peers.waiting import wait_until_async

pytestmark = pytest.mark.docker

FAST = BackoffPolicy(initial=0.5, factor=2.0, cap=4.0, reset_after=60.0)


def spec(name, image, cmd, **kw):
    return ModuleSpec(
        name=name,
        image=image,
        create_options={"Cmd": cmd, "StopTimeout": 1, "HostConfig": {"NetworkMode": "none"}},
        pull_policy=PullPolicy.NEVER,
        **kw,
    )


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


async def until(check, within=30.0, what="condition"):
    return await wait_until_async(check, timeout_s=within, what=what, interval_s=0.1)


async def reconciled(rec, image, barriers):
    """Return once a whole reconcile pass ran after this call: a module whose name sorts last
    (a pass acts in name order) is added and runs. Its name goes to `barriers` for clean-up."""
    name = unique("zz-barrier")
    barriers.append(name)
    await rec.put(spec(name, image, ["sleep", "600"]))
    await until(lambda: running_ids(rec.engine, name), what="a whole reconcile pass")


class Running:
    """A reconciler running as a task for the length of an `async with`."""

    def __init__(self, engine, store, **kw):
        # Each test's daemon owns its containers alone, so tests sharing an engine leave each
        # other's modules alone (a daemon removes containers it owns but does not want).
        owner = f"test-{abs(hash(str(store.root)))}"
        self.reconciler = Reconciler(engine, DesiredModules(store), policy=FAST, owner=owner, **kw)

    async def __aenter__(self):
        self.task = asyncio.ensure_future(self.reconciler.run())
        return self.reconciler

    async def __aexit__(self, *exc):
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


async def containers_of(engine, name):
    return await engine.list_containers({MODULE_LABEL: name})


async def running_ids(engine, name):
    return [c.container_id for c in await containers_of(engine, name) if c.state == "running"]


def cleanup(engine, names):
    async def remove():
        for name in names:
            for c in await containers_of(engine, name):
                await engine.remove(c.container_id, force=True)

    asyncio.run(remove())


def test_crashing_module_restarts_with_growing_backoff(sim_dockerd, busybox_image, tmp_path):
    engine = DockerEngine(str(sim_dockerd.socket))
    name = unique("crasher")
    crasher = spec(name, busybox_image, ["sh", "-c", "sleep 0.2; exit 3"])

    async def scenario():
        starts: list[float] = []
        async with (
            engine.subscribe({MODULE_LABEL: name}) as events,
            Running(engine, StateStore(tmp_path)) as reconciler,
        ):
            await reconciler.put(crasher)
            async for event in events:
                if event["Action"] == "start":
                    starts.append(time.monotonic())
                    if len(starts) == 4:
                        break
        return [b - a for a, b in itertools.pairwise(starts)]

    try:
        gaps = asyncio.run(asyncio.wait_for(scenario(), 60))
    finally:
        cleanup(engine, [name])
    # each gap is the 0.2 s run plus the back-off: 0.5, 1, 2 seconds
    for gap, backoff in zip(gaps, [0.5, 1.0, 2.0], strict=True):
        assert backoff + 0.1 < gap < backoff + 1.5, gaps
    assert gaps[0] < gaps[1] < gaps[2]


def test_killed_agent_is_restarted_by_the_watchdog(sim_dockerd, busybox_image, tmp_path):
    engine = DockerEngine(str(sim_dockerd.socket))
    name = unique("agent")
    agent = spec(name, busybox_image, ["sleep", "600"])

    async def scenario():
        async with Running(engine, StateStore(tmp_path), agent=agent, agent_max_retries=5):
            first = await until(lambda: running_ids(engine, name), what="agent running")
            await engine.kill(first[0])
            again = await until(lambda: running_ids(engine, name), what="agent restarted")
            assert again == first  # restarted, not recreated
            assert len(await containers_of(engine, name)) == 1

    try:
        asyncio.run(asyncio.wait_for(scenario(), 60))
    finally:
        cleanup(engine, [name])


def test_watchdog_gives_up_after_max_retries(sim_dockerd, busybox_image, tmp_path):
    engine = DockerEngine(str(sim_dockerd.socket))
    name = unique("agent")
    agent = spec(name, busybox_image, ["false"])

    async def scenario():
        async with Running(engine, StateStore(tmp_path), agent=agent, agent_max_retries=1) as rec:
            await until(lambda: _async(rec.degraded), what="degraded")
            assert "max_retries = 1" in rec.degraded
            await reconciled(rec, busybox_image, barriers)
            (agent_status,) = await rec.statuses([name])
            assert agent_status.restart_count == 2
            assert agent_status.runtime_status is not RuntimeStatus.RUNNING

    barriers: list[str] = []
    try:
        asyncio.run(asyncio.wait_for(scenario(), 60))
    finally:
        cleanup(engine, [name, *barriers])


async def _async(value):
    return value


def test_restarted_daemon_adopts_and_spec_change_recreates_once(
    sim_dockerd, busybox_image, tmp_path
):
    engine = DockerEngine(str(sim_dockerd.socket))
    name = unique("steady")
    steady = spec(name, busybox_image, ["sleep", "600"], restart_policy=RestartPolicy.ALWAYS)

    async def scenario():
        store = StateStore(tmp_path)
        async with Running(engine, store) as rec:
            await rec.put(steady)
            first = await until(lambda: running_ids(engine, name), what="module running")
        # The daemon went away abruptly; a new one finds the stored spec and the container.
        async with Running(engine, store) as rec:
            await rec.loaded()
            assert rec.spec(name) == steady
            await reconciled(rec, busybox_image, barriers)
            assert await running_ids(engine, name) == first
            changed = ModuleSpec(**{**steady.__dict__, "env": {"MODE": "new"}})
            await rec.put(changed)

            async def replaced():
                ids = await running_ids(engine, name)
                return ids if ids and ids != first else None

            second = await until(replaced, what="recreated module")
            await reconciled(rec, busybox_image, barriers)
            assert [c.container_id for c in await containers_of(engine, name)] == second
            env = (await engine.inspect(second[0]))["Config"]["Env"]
            assert "MODE=new" in env

    barriers: list[str] = []
    try:
        asyncio.run(asyncio.wait_for(scenario(), 60))
    finally:
        cleanup(engine, [name, *barriers])


def test_stop_and_start_keep_the_desired_status(sim_dockerd, busybox_image, tmp_path):
    engine = DockerEngine(str(sim_dockerd.socket))
    name = unique("toggled")

    async def scenario():
        async with Running(engine, StateStore(tmp_path)) as rec:
            await rec.put(spec(name, busybox_image, ["sleep", "600"]))
            await until(lambda: running_ids(engine, name), what="running")
            await rec.set_status(name, DesiredStatus.STOPPED)
            await until(lambda: _none(running_ids(engine, name)), what="stopped")
            await reconciled(rec, busybox_image, barriers)
            assert await running_ids(engine, name) == []
            (stopped,) = await rec.statuses([name])
            assert stopped.runtime_status is RuntimeStatus.STOPPED
            await rec.set_status(name, DesiredStatus.RUNNING)
            await until(lambda: running_ids(engine, name), what="running again")

    barriers: list[str] = []
    try:
        asyncio.run(asyncio.wait_for(scenario(), 60))
    finally:
        cleanup(engine, [name, *barriers])


async def _none(awaitable):
    return not await awaitable


def test_engine_restart_and_reboot_bring_modules_back_from_local_state(
    busybox_image, sim_dockerd, tmp_path
):
    """A private engine is stopped under a running reconciler, then the whole gateway 'reboots'."""
    # containerd's sockets live under the exec root: keep the path well under 108 bytes.
    short = Path(tempfile.mkdtemp(prefix="ek-engine-", dir="/tmp"))
    private = Dockerd(short)
    private.start()
    try:
        rootfs_tag = busybox_image
        _load_image(sim_dockerd, private, rootfs_tag)
        engine = DockerEngine(str(private.socket))
        names = [unique("a"), unique("b")]
        store = StateStore(tmp_path / "state")

        async def phase_one():
            async with Running(engine, store) as rec:
                for name in names:
                    await rec.put(spec(name, rootfs_tag, ["sleep", "600"]))
                for name in names:
                    await until(lambda n=name: running_ids(engine, n), what=f"{name} running")
                await asyncio.get_running_loop().run_in_executor(None, private.stop)
                await until(lambda: _async(not rec.available), what="the engine to be lost")
                await asyncio.get_running_loop().run_in_executor(None, private.start)
                for name in names:
                    await until(lambda n=name: running_ids(engine, n), 60, f"{name} recovered")
                for name in names:
                    assert len(await containers_of(engine, name)) == 1

        asyncio.run(asyncio.wait_for(phase_one(), 120))
        # Reboot: no daemon, no engine; the engine comes back with every container exited and
        # no network at all. A new daemon restores the modules from the store, without pulling.
        private.stop()
        private.start()

        async def phase_two():
            for name in names:
                assert await running_ids(engine, name) == []
            async with Running(engine, store):
                for name in names:
                    await until(lambda n=name: running_ids(engine, n), 60, f"{name} after reboot")
                    assert len(await containers_of(engine, name)) == 1

        asyncio.run(asyncio.wait_for(phase_two(), 120))
    finally:
        private.stop()
        shutil.rmtree(short, ignore_errors=True)


def _load_image(source: Dockerd, target: Dockerd, tag: str) -> None:
    with subprocess.Popen(
        ["docker", "save", tag], stdout=subprocess.PIPE, env=source._env()
    ) as saver:
        loaded = subprocess.run(
            ["docker", "load"],
            stdin=saver.stdout,
            capture_output=True,
            env=target._env(),
            check=False,
        )
    assert saver.returncode == 0 and loaded.returncode == 0, loaded.stderr
