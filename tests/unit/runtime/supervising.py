"""`supervising(reconciler)`: the reconciler's `run()` as a task for the length of a block, its
stored modules loaded before the block starts; cancelled at the end."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from firmware.runtime.reconciler import Reconciler


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
