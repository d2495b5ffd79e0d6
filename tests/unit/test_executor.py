"""The bounded executor: runs blocking calls off the loop, bounds admitted calls."""

from __future__ import annotations

import asyncio
import threading

import pytest

from firmware.executor import BoundedExecutor
from tests.peers.waiting import wait_until_async


async def test_runs_off_the_loop_thread_and_returns() -> None:
    executor = BoundedExecutor(workers=1, queue=1)
    loop_thread = threading.get_ident()
    assert await executor.run(threading.get_ident) != loop_thread
    assert await executor.run(lambda a, b=0: a + b, 2, b=3) == 5
    with pytest.raises(ZeroDivisionError):
        await executor.run(lambda: 1 / 0)
    executor.shutdown()


async def test_callers_wait_beyond_capacity() -> None:
    executor = BoundedExecutor(workers=1, queue=1)
    gate = threading.Event()
    calls = [asyncio.create_task(executor.run(gate.wait, 5)) for _ in range(4)]
    await wait_until_async(lambda: executor.in_flight == 2, timeout_s=5, what="two admitted calls")
    # Time passing is the subject: the other two callers stay outside while the gate is shut.
    await asyncio.sleep(0.05)
    assert executor.in_flight == 2, "only workers + queue calls may be admitted"
    gate.set()
    assert await asyncio.gather(*calls) == [True] * 4
    await asyncio.sleep(0)
    assert executor.in_flight == 0
    executor.shutdown()


async def test_cancelled_caller_keeps_slot_until_call_ends() -> None:
    executor = BoundedExecutor(workers=1, queue=0)
    gate = threading.Event()
    busy = asyncio.create_task(executor.run(gate.wait, 5))
    await wait_until_async(lambda: executor.in_flight == 1, timeout_s=5, what="the call running")
    busy.cancel()
    await asyncio.gather(busy, return_exceptions=True)
    assert busy.cancelled()
    waiting = asyncio.create_task(executor.run(lambda: "next"))
    # Time passing is the subject: the new call must not be admitted while the old one runs.
    await asyncio.sleep(0.05)
    assert not waiting.done(), "the slot is still used by the running call"
    gate.set()
    assert await asyncio.wait_for(waiting, 2) == "next"
    executor.shutdown()
