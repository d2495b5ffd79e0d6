"""Renewal timers: when a renewal is due, back-off after failures, recovery after success."""

from __future__ import annotations

import asyncio
import itertools

from firmware.certs.renewal import RenewalSchedule
from firmware.errors import Unavailable


def test_due_is_the_share_of_the_lifetime():
    schedule = RenewalSchedule(None, renew_at=0.8, retry_initial=1, retry_max=8)
    assert schedule.due(1000.0, 2000.0) == 1800.0


def test_plan_is_relative_to_the_clock_and_never_negative():
    async def scenario():
        schedule = RenewalSchedule(
            None, renew_at=0.5, retry_initial=1, retry_max=8, clock=lambda: 1100.0
        )
        delays = (schedule.plan("a", 1000.0, 1400.0), schedule.plan("b", 0.0, 100.0))
        schedule.cancel()
        return delays

    assert asyncio.run(scenario()) == (100.0, 0.0)


def test_failures_back_off_exponentially_up_to_the_maximum_then_recover():
    attempts = []
    seen = []

    async def renew(name):
        attempts.append(asyncio.get_running_loop().time())
        if name in schedule.failures:
            failure = schedule.failures[name]
            seen.append((failure.attempts, failure.retry_in, failure.message))
        if len(attempts) < 5:
            raise Unavailable("token gone", hint="plug it in")

    async def scenario():
        schedule.plan("c", 0.0, 0.0)
        async with asyncio.timeout(10):
            await schedule.until(lambda: len(attempts) == 5)
        await schedule.wait_idle()
        schedule.succeeded("c")
        schedule.cancel()

    schedule = RenewalSchedule(renew, renew_at=0.5, retry_initial=0.05, retry_max=0.2)
    asyncio.run(scenario())
    message = "token gone (plug it in)"
    assert seen == [(1, 0.05, message), (2, 0.1, message), (3, 0.2, message), (4, 0.2, message)]
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert gaps[0] >= 0.045 and gaps[2] >= 0.19
    assert schedule.failures == {}


def test_until_wakes_on_each_outcome_and_not_before():
    outcomes = []

    async def renew(name):
        outcomes.append(name)
        if name == "bad":
            raise Unavailable("token gone")

    async def scenario():
        woken = []

        async def watch():
            await schedule.until(lambda: "bad" in schedule.failures)
            woken.append(list(outcomes))

        watcher = asyncio.create_task(watch())
        await asyncio.sleep(0)
        assert not woken
        schedule.plan("good", 0.0, 0.0)
        async with asyncio.timeout(10):
            await schedule.until(lambda: outcomes == ["good"])
        assert not woken
        schedule.plan("bad", 0.0, 0.0)
        async with asyncio.timeout(10):
            await watcher
        schedule.cancel()
        return woken

    schedule = RenewalSchedule(renew, renew_at=0.5, retry_initial=60, retry_max=60)
    assert asyncio.run(scenario()) == [["good", "bad"]]
