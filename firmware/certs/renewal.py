"""Renewal timers: each managed certificate is renewed once a share of its lifetime has passed.

One `loop.call_later` timer per certificate (no polling). A failed renewal is retried with
exponential back-off between `retry_initial` and `retry_max` seconds and recorded as a
`RenewalFailure` (the service reports degraded) until a renewal succeeds.

Every outcome (an attempt ending, a renewal reported by `succeeded`) wakes the tasks waiting in
`until(condition)`, which re-check their condition then: the way to observe renewals without
polling or sleeping.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from firmware.errors import EdgekeeperError

log = logging.getLogger("edgekeeper.certs")


@dataclass(frozen=True)
class RenewalFailure:
    """The renewals of one certificate that failed in a row: how many, why, next retry delay."""

    attempts: int
    message: str
    retry_in: float


class RenewalSchedule:
    """Timers that call `renew(name)`; `plan` (re)arms a certificate's timer."""

    def __init__(
        self,
        renew: Callable[[str], Awaitable[None]],
        *,
        renew_at: float,
        retry_initial: float,
        retry_max: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._renew = renew
        self._renew_at = renew_at
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self._clock = clock
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._outcome = asyncio.Event()
        self.failures: dict[str, RenewalFailure] = {}

    def due(self, not_before: float, not_after: float) -> float:
        """The wall-clock time at which a certificate with this validity should be renewed."""
        return not_before + self._renew_at * (not_after - not_before)

    def plan(self, name: str, not_before: float, not_after: float) -> float:
        """Arm the renewal timer of `name`; returns the delay in seconds."""
        delay = max(0.0, self.due(not_before, not_after) - self._clock())
        self._arm(name, delay)
        return delay

    def succeeded(self, name: str) -> None:
        """`name` was renewed (by its timer, a cascade or on request): clear its failure."""
        self.failures.pop(name, None)
        self._notify()

    async def until(self, condition: Callable[[], bool]) -> None:
        """Return once `condition()` holds, checking it now and after every renewal outcome.

        Never times out by itself: callers bound the wait (`asyncio.timeout`).
        """
        while not condition():
            await self._outcome.wait()

    def cancel(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for task in self._tasks:
            task.cancel()

    async def wait_idle(self) -> None:
        """Wait for renewals in progress (tests and shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _arm(self, name: str, delay: float) -> None:
        previous = self._timers.pop(name, None)
        if previous is not None:
            previous.cancel()
        loop = asyncio.get_running_loop()
        self._timers[name] = loop.call_later(delay, self._fire, name)

    def _fire(self, name: str) -> None:
        self._timers.pop(name, None)
        task = asyncio.get_running_loop().create_task(self._attempt(name))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _notify(self) -> None:
        """Wake the waiters of `until`; later waiters wait for the next outcome."""
        self._outcome.set()
        self._outcome = asyncio.Event()

    async def _attempt(self, name: str) -> None:
        try:
            await self._renew(name)
        except asyncio.CancelledError:
            raise
        except Exception as err:
            attempts = self.failures[name].attempts + 1 if name in self.failures else 1
            retry_in = min(self._retry_initial * 2 ** (attempts - 1), self._retry_max)
            message = err.render() if isinstance(err, EdgekeeperError) else "internal error"
            log.warning(
                "renewal of certificate %s failed (attempt %d, retry in %.0f s): %s",
                name,
                attempts,
                retry_in,
                message,
                exc_info=not isinstance(err, EdgekeeperError),
            )
            self.failures[name] = RenewalFailure(attempts, message, retry_in)
            self._arm(name, retry_in)
        self._notify()
