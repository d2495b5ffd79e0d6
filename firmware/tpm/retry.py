"""Back-off for TPM commands answered with RETRY, YIELDED or TESTING: bounded, growing delays.

ESAPI already resubmits such a command a few times at once; this policy waits between rounds so
a TPM that is self-testing or busy with a long command gets time to finish.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    """At most `attempts` sends; the waits between them start at `first_delay_s` and grow by
    `factor` up to `max_delay_s`."""

    attempts: int = 10
    first_delay_s: float = 0.01
    factor: float = 2.0
    max_delay_s: float = 1.0

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.first_delay_s < 0 or self.factor < 1:
            raise ValueError(f"retry policy out of range: {self}")

    def delays(self) -> Iterator[float]:
        """The waits before the second, third, ... send: `attempts - 1` of them."""
        delay = self.first_delay_s
        for _ in range(self.attempts - 1):
            yield min(delay, self.max_delay_s)
            delay *= self.factor
