"""Module hooks against a real dockerd: `before_create` edits the create body of every container
made, a failing hook holds the create back and it is retried, `after_remove` follows a delete."""

from __future__ import annotations

import asyncio

import pytest

from firmware.errors import Unavailable
from firmware.runtime.engine import DockerEngine
from firmware.store.state import StateStore
from tests.integration.runtime.test_reconciler import (
    Running,
    cleanup,
    containers_of,
    spec,
    unique,
    until,
)

pytestmark = pytest.mark.docker


class RecordingHook:
    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.created: list[str] = []
        self.removed: list[str] = []

    async def before_create(self, module, body):
        if self.failures:
            self.failures -= 1
            raise Unavailable(f"socket for {module.name} not ready")
        self.created.append(module.name)
        body["Env"].append(f"HOOKED={module.name}")
        body.setdefault("Labels", {})["hooked"] = "yes"

    async def after_remove(self, module_name):
        self.removed.append(module_name)


def test_hooks_edit_the_body_retry_and_follow_removal(sim_dockerd, busybox_image, tmp_path):
    engine = DockerEngine(str(sim_dockerd.socket))
    name = unique("hooked")
    hook = RecordingHook(failures=1)

    async def scenario():
        async with Running(engine, StateStore(tmp_path), hooks=(hook,)) as reconciler:
            await reconciler.put(spec(name, busybox_image, ["sleep", "60"]))

            async def running():
                found = await containers_of(engine, name)
                return found if found and found[0].state == "running" else None

            found = await until(running, within=20, what="the hooked module to run")
            assert reconciler.issue(name) is None
            doc = await engine.inspect(found[0].container_id)
            assert f"HOOKED={name}" in doc["Config"]["Env"]
            assert doc["Config"]["Labels"]["hooked"] == "yes"
            assert hook.created == [name]

            await reconciler.delete(name)

            async def removed():
                return not await containers_of(engine, name) and hook.removed == [name]

            await until(removed, within=20, what="removal and after_remove")

    try:
        asyncio.run(asyncio.wait_for(scenario(), 60))
    finally:
        cleanup(engine, [name])
