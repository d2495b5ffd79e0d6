"""The bounded executor: where blocking calls (device I/O, C libraries, fsync) run off the loop.

`await executor.run(fn, *args)` runs `fn` in a small thread pool. At most `workers + queue`
calls are admitted at once; further callers wait (asynchronously) for a slot instead of piling
up without bound. A slot is freed when the call really ends, even if its caller was cancelled
while the thread was still busy. Threads start only when first needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import ParamSpec, Protocol, TypeVar

T = TypeVar("T")
P = ParamSpec("P")


class RunBlocking(Protocol):
    """`BoundedExecutor.run` as a value: for code that needs only to run blocking calls."""

    def __call__(
        self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
    ) -> Awaitable[T]: ...


class BoundedExecutor:
    """A thread pool with a bounded number of admitted calls."""

    def __init__(self, workers: int = 2, queue: int = 16) -> None:
        self.workers = workers
        self.capacity = workers + queue
        self._slots: asyncio.Semaphore | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._in_flight = 0
        self._count_lock = threading.Lock()

    @property
    def in_flight(self) -> int:
        """Calls submitted to the threads and not yet finished (readable from any thread)."""
        with self._count_lock:
            return self._in_flight

    async def run(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `fn(*args, **kwargs)` in a worker thread and return (or raise) its result."""
        loop = asyncio.get_running_loop()
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.capacity)
        slots = self._slots
        await slots.acquire()
        try:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="edgekeeper-io")
            call = self._pool.submit(functools.partial(fn, *args, **kwargs))
        except BaseException:
            slots.release()
            raise
        with self._count_lock:
            self._in_flight += 1
        call.add_done_callback(functools.partial(self._finished, loop, slots))
        return await asyncio.wrap_future(call)

    def _finished(
        self, loop: asyncio.AbstractEventLoop, slots: asyncio.Semaphore, _call: Future[T]
    ) -> None:
        with self._count_lock:
            self._in_flight -= 1
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(slots.release)

    def shutdown(self, wait: bool = True) -> None:
        """Stop the threads; queued calls are cancelled, running ones finish if `wait`."""
        if self._pool is not None:
            self._pool.shutdown(wait=wait, cancel_futures=True)
            self._pool = None
