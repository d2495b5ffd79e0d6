"""Restart back-off: how long a module that stopped waits before it is started again.

Like IoT Edge's agent: the first restart waits `initial` seconds, each further one doubles up to
`cap`; a module that then runs healthy for `reset_after` seconds starts over from zero. Pure
bookkeeping over timestamps the caller passes in, so the schedule is tested without waiting.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BackoffPolicy:
    initial: float = 10.0
    factor: float = 2.0
    cap: float = 300.0
    reset_after: float = 600.0

    def delay(self, failures: int) -> float:
        """Wait before the restart that follows the `failures`-th stop in a row."""
        if failures <= 0:
            return 0.0
        return min(self.cap, self.initial * self.factor ** (failures - 1))


@dataclass
class RestartRecord:
    """One module's restart history: consecutive failures and when it last started."""

    failures: int = 0
    started_at: float | None = None
    not_before: float = 0.0

    def started(self, now: float) -> None:
        self.started_at = now

    def stopped(self, now: float, policy: BackoffPolicy) -> float:
        """Count a stop at `now`; returns the time before which no restart may happen."""
        if self.started_at is not None and now - self.started_at >= policy.reset_after:
            self.failures = 0
        self.failures += 1
        self.started_at = None
        self.not_before = now + policy.delay(self.failures)
        return self.not_before
