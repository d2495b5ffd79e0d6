"""Token buckets: each workload socket gets its own, so one busy module cannot starve the others.

A bucket holds up to `burst` tokens and gains `rate` per second; a request takes one token or is
refused with 429. No timers: tokens are counted from the clock when a request arrives.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from firmware.errors import TooManyRequests


@dataclass(frozen=True)
class RateLimit:
    """Requests per second a socket may make, and how many it may make at once."""

    rate: float = 1000.0
    burst: int = 200


class TokenBucket:
    def __init__(self, limit: RateLimit, clock: Callable[[], float] = time.monotonic) -> None:
        self._limit = limit
        self._clock = clock
        self._tokens = float(limit.burst)
        self._at = clock()

    def take(self) -> bool:
        """Take one token if there is one."""
        now = self._clock()
        self._tokens = min(
            float(self._limit.burst), self._tokens + (now - self._at) * self._limit.rate
        )
        self._at = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True


class SocketRateLimits:
    """One bucket per listener ("workload:tempSensor", "workload")."""

    def __init__(self, limit: RateLimit, clock: Callable[[], float] = time.monotonic) -> None:
        self._limit = limit
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}

    def check(self, listener: str) -> None:
        """Take a token for `listener`; `TooManyRequests` when its bucket is empty."""
        bucket = self._buckets.get(listener)
        if bucket is None:
            bucket = self._buckets[listener] = TokenBucket(self._limit, self._clock)
        if not bucket.take():
            raise TooManyRequests(
                f"rate limit of {self._limit.rate:g} requests/s on socket {listener!r} reached",
                hint="retry after a short pause; cache SAS tokens instead of signing per message",
            )

    def forget(self, listener: str) -> None:
        self._buckets.pop(listener, None)
