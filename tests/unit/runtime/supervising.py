"""`supervising(reconciler)`: the reconciler's `run()` as a task for the length of a block, its
stored modules loaded before the block starts; cancelled at the end. `agent_reconciler`: a
reconciler on a fake engine whose only module is an agent running a fake program."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from firmware.runtime.desired import DesiredModules
from firmware.runtime.reconciler import Reconciler
from firmware.runtime.spec import ModuleSpec, PullPolicy
from firmware.store.state import StateStore
from tests.peers.fake_engine import FakeEngine

AGENT = "edgeAgent"


@contextlib.asynccontextmanager
async def supervising(reconciler: Reconciler) -> AsyncIterator[Reconciler]:
    task = asyncio.ensure_future(reconciler.run())
    try:
        await reconciler.loaded()
        yield reconciler
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def agent_reconciler(root: Path, engine: FakeEngine) -> Reconciler:
    """A reconciler on `engine`, its state under `root`, whose agent `edgeAgent` runs the
    program `agent` (arrange it with `engine.program(["agent"], ...)`) from image agent:1."""
    store = StateStore(root)
    store.ensure()
    engine.add_image("agent:1")
    agent = ModuleSpec(
        name=AGENT, image="agent:1", create_options={"Cmd": ["agent"]}, pull_policy=PullPolicy.NEVER
    )
    return Reconciler(engine, DesiredModules(store), agent=agent)
