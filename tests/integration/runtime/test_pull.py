"""Image pulls run beside supervision: a pull that cannot finish (no network here) shows as the
module's issue and is retried later, while the other modules are created and run meanwhile."""

from __future__ import annotations

import asyncio

import pytest

from firmware.runtime.engine import DockerEngine
from firmware.runtime.spec import ModuleSpec, PullPolicy
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


def test_failed_pull_is_reported_and_does_not_hold_up_other_modules(
    sim_dockerd, busybox_image, tmp_path
):
    engine = DockerEngine(str(sim_dockerd.socket))
    good, missing = unique("good"), unique("unpullable")
    unpullable = ModuleSpec(
        name=missing,
        image="registry.invalid/edgekeeper/nothing:1",
        pull_policy=PullPolicy.ON_CREATE,
    )

    async def scenario():
        async with Running(engine, StateStore(tmp_path)) as reconciler:
            await reconciler.apply(
                {missing: unpullable, good: spec(good, busybox_image, ["sleep", "60"])}
            )

            async def good_runs():
                found = await containers_of(engine, good)
                return found and found[0].state == "running"

            await until(good_runs, within=20, what="the good module to run")

            async def reported():
                issue = reconciler.issue(missing)
                return (
                    issue
                    and "pulling registry.invalid/edgekeeper/nothing:1 failed" in issue.message
                )

            await until(reported, within=40, what="the failed pull to be reported")
            assert await containers_of(engine, missing) == []

    try:
        asyncio.run(asyncio.wait_for(scenario(), 90))
    finally:
        cleanup(engine, [good, missing])
