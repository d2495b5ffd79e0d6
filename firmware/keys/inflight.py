"""`CallsInFlight`: how many backend calls run on each backend registry; waiting for none to.

The key service counts every backend call against the registry its backend came from and
uncounts it when the call ends, however it ends (result, error, cancellation). After a reload
replaced the registry, `idle(old)` waits until the calls on the old one have ended; only then are
its backends closed. Loop-side only: nothing here locks or blocks.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Hashable, Iterator


class CallsInFlight:
    """Calls running per registry (any hashable owner), and waiters for a registry to go idle."""

    def __init__(self) -> None:
        self._counts: dict[Hashable, int] = {}
        self._idle: dict[Hashable, asyncio.Event] = {}

    def running(self, owner: Hashable) -> int:
        """How many calls on `owner` have started and not ended."""
        return self._counts.get(owner, 0)

    @contextlib.contextmanager
    def call(self, owner: Hashable) -> Iterator[None]:
        """Count one call on `owner` for the duration of the block."""
        self._counts[owner] = self._counts.get(owner, 0) + 1
        try:
            yield
        finally:
            left = self._counts[owner] - 1
            if left:
                self._counts[owner] = left
            else:
                del self._counts[owner]
                idle = self._idle.pop(owner, None)
                if idle is not None:
                    idle.set()

    async def idle(self, owner: Hashable) -> None:
        """Return once no call on `owner` is running (at once if none is). Checked again on
        waking: the task that ended the last call may have started the next one already."""
        while owner in self._counts:
            await self._idle.setdefault(owner, asyncio.Event()).wait()
