"""Token buckets: each workload socket gets its own, so one busy module cannot starve the others;
and budgets for expensive work (certificates, key operations), per module and for all modules.

A bucket holds up to `burst` tokens and gains `rate` per second; a request takes one token or is
refused with 429 and a Retry-After of the time until the next token. No timers: tokens are
counted from the clock when a request arrives.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from firmware.config.schema import WorkloadBudgets
from firmware.errors import TooManyRequests

Clock = Callable[[], float]

# Buckets a budget keeps before it drops the full ones (a full bucket is what a new one is).
_TRACKED_MODULES = 256


@dataclass(frozen=True)
class RateLimit:
    """Requests per second (more than 0) a socket may make, and how many it may make at once."""

    rate: float = 1000.0
    burst: int = 200


class TokenBucket:
    def __init__(self, limit: RateLimit, clock: Clock = time.monotonic) -> None:
        self._limit = limit
        self._clock = clock
        self._tokens = float(limit.burst)
        self._at = clock()

    def take_or_wait(self) -> float:
        """Take one token and return 0 if there is one; else the seconds until there is."""
        wait = self.wait_s()
        if wait == 0.0:
            self._tokens -= 1.0
        return wait

    def wait_s(self) -> float:
        """Seconds until a token is there (0 when one is there now)."""
        self._refill()
        if self._tokens >= 1.0:
            return 0.0
        return (1.0 - self._tokens) / self._limit.rate

    @property
    def full(self) -> bool:
        """True when the bucket holds `burst` tokens: it is then as good as a new one."""
        self._refill()
        return self._tokens >= self._limit.burst

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(
            float(self._limit.burst), self._tokens + (now - self._at) * self._limit.rate
        )
        self._at = now


class SocketRateLimits:
    """One bucket per listener ("workload:tempSensor", "workload"). `limit` is a `RateLimit`, or
    a function giving the one in force now (read on every request: when it changes, the buckets
    start full again at the new limit)."""

    def __init__(
        self, limit: RateLimit | Callable[[], RateLimit], clock: Clock = time.monotonic
    ) -> None:
        self._settings = limit if callable(limit) else lambda: limit
        self._limit = self._settings()
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}

    def check(self, listener: str) -> None:
        """Take a token for `listener`; `TooManyRequests` when its bucket is empty."""
        limit = self._settings()
        if limit != self._limit:
            self._limit = limit
            self._buckets.clear()
        bucket = self._buckets.get(listener)
        if bucket is None:
            bucket = self._buckets[listener] = TokenBucket(limit, self._clock)
        wait = bucket.take_or_wait()
        if wait > 0.0:
            raise TooManyRequests(
                f"rate limit of {limit.rate:g} requests/s on socket {listener!r} reached",
                hint="retry after a short pause; cache SAS tokens instead of signing per message",
                retry_after_s=wait,
            )

    def forget(self, listener: str) -> None:
        self._buckets.pop(listener, None)


@dataclass(frozen=True)
class Allowance:
    """`count` operations per `period_s` seconds, all at once if need be; `setting` is the
    `[workload.budgets]` key that sets `count`."""

    count: int
    period_s: float
    setting: str

    @property
    def limit(self) -> RateLimit:
        return RateLimit(rate=self.count / self.period_s, burst=self.count)

    def describe(self) -> str:
        unit = {1.0: "second", 60.0: "minute"}.get(self.period_s, f"{self.period_s:g} s")
        return f"{self.count} per {unit}"


@dataclass(frozen=True)
class BudgetLimits:
    """What one module may spend, and what all modules together may."""

    per_module: Allowance
    overall: Allowance


class Budget:
    """One kind of expensive work (`what`, e.g. "certificates"): a bucket per module and one for
    all modules. `limits()` is read on every spend, so a reloaded config applies at once (the
    buckets start full again when it changed)."""

    def __init__(self, what: str, limits: Callable[[], BudgetLimits], clock: Clock) -> None:
        self._what = what
        self._limits = limits
        self._clock = clock
        self._seen: BudgetLimits | None = None
        self._overall: TokenBucket | None = None
        self._modules: dict[str, TokenBucket] = {}

    def spend(self, module: str) -> None:
        """Take one from `module`'s bucket and one from the overall bucket, or neither:
        `TooManyRequests` with the wait until both have one, naming the budget that is spent."""
        limits = self._limits()
        overall = self._overall
        if overall is None or (limits is not self._seen and limits != self._seen):
            self._seen = limits
            overall = self._overall = TokenBucket(limits.overall.limit, self._clock)
            self._modules.clear()
        own = self._modules.get(module)
        if own is None:
            self._prune()
            own = self._modules[module] = TokenBucket(limits.per_module.limit, self._clock)
        own_wait, overall_wait = own.wait_s(), overall.wait_s()
        if own_wait > 0.0 and own_wait >= overall_wait:
            raise self._spent(f"module {module!r} has", limits.per_module, own_wait)
        if overall_wait > 0.0:
            raise self._spent("all modules together have", limits.overall, overall_wait)
        own.take_or_wait()
        overall.take_or_wait()

    def _spent(self, who: str, allowance: Allowance, wait: float) -> TooManyRequests:
        return TooManyRequests(
            f"{who} spent the budget of {allowance.describe()} {self._what}; "
            f"retry in {math.ceil(wait)} s",
            hint=f"wait for Retry-After, or raise [workload.budgets] {allowance.setting}",
            retry_after_s=wait,
        )

    def _prune(self) -> None:
        if len(self._modules) >= _TRACKED_MODULES:
            for module in [name for name, bucket in self._modules.items() if bucket.full]:
                del self._modules[module]


class ModuleBudgets:
    """The workload API's budgets, from `[workload.budgets]` as `settings()` gives it now:
    certificates per minute and key operations (sign, encrypt, decrypt) per second."""

    def __init__(self, settings: Callable[[], WorkloadBudgets], clock: Clock = time.monotonic):
        self._settings = settings
        self._seen: WorkloadBudgets | None = None
        self._limits: tuple[BudgetLimits, BudgetLimits] | None = None
        self.certificates = Budget("certificates", lambda: self._now()[0], clock)
        self.key_operations = Budget("key operations", lambda: self._now()[1], clock)

    def _now(self) -> tuple[BudgetLimits, BudgetLimits]:
        """The certificate and key-operation limits of the settings now (made again only when
        the settings are another object: a reloaded config)."""
        now = self._settings()
        if now is not self._seen or self._limits is None:
            self._seen = now
            self._limits = (
                BudgetLimits(
                    Allowance(now.certificates_per_module, 60.0, "certificates_per_module"),
                    Allowance(now.certificates, 60.0, "certificates"),
                ),
                BudgetLimits(
                    Allowance(now.key_operations_per_module, 1.0, "key_operations_per_module"),
                    Allowance(now.key_operations, 1.0, "key_operations"),
                ),
            )
        return self._limits
