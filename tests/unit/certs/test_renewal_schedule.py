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

    async def renew(name):
        attempts.append(asyncio.get_running_loop().time())
        if len(attempts) < 5:
            raise Unavailable("token gone", hint="plug it in")

    async def scenario():
        schedule = RenewalSchedule(renew, renew_at=0.5, retry_initial=0.05, retry_max=0.2)
        schedule.plan("c", 0.0, 0.0)
        seen = []
        while len(attempts) < 5:
            await asyncio.sleep(0.01)
            if "c" in schedule.failures:
                failure = schedule.failures["c"]
                assert failure.message == "token gone (plug it in)"
                if not seen or seen[-1] != (failure.attempts, failure.retry_in):
                    seen.append((failure.attempts, failure.retry_in))
        await schedule.wait_idle()
        schedule.succeeded("c")
        schedule.cancel()
        return seen, schedule.failures

    seen, failures = asyncio.run(scenario())
    assert seen == [(1, 0.05), (2, 0.1), (3, 0.2), (4, 0.2)]
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert gaps[0] >= 0.045 and gaps[2] >= 0.19
    assert failures == {}
