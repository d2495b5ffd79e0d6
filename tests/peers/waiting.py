"""How tests wait for something to happen: poll a predicate until it holds or a deadline passes.

`wait_until` (threads, subprocesses) and `wait_until_async` (the event loop) return the predicate's
first truthy value, or fail with `WaitTimeout` (an AssertionError, so pytest shows it as a failed
check) naming what was awaited and the last value seen. A predicate may raise to stop the wait at
once, e.g. when the process that should create a socket has exited. The predicate always runs once
more at the deadline, so a slow poll never loses the last chance. Standard library only: build.py
imports tests/peers/sim.py, which waits with this module, before any virtualenv exists.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

DEFAULT_INTERVAL_S = 0.05
STRAGGLER_S = 2.0  # how long an async predicate's call at the deadline may still take
LOG_TAIL_LINES = 40


class WaitTimeout(AssertionError):
    """What a test waited for did not happen before its deadline."""

    def __init__(self, what: str, timeout_s: float, last: object) -> None:
        super().__init__(
            f"timed out after {timeout_s:g} s waiting for {what}; last value: {last!r}"
        )
        self.what = what
        self.last = last


class ProcessExited(AssertionError):
    """The process that should have made something happen exited first."""


def wait_until(
    predicate: Callable[[], T],
    *,
    timeout_s: float,
    what: str,
    interval_s: float = DEFAULT_INTERVAL_S,
) -> T:
    """Call `predicate` every `interval_s` until it returns something truthy, and return that."""
    deadline = time.monotonic() + timeout_s
    while True:
        last = predicate()
        if last:
            return last
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise WaitTimeout(what, timeout_s, last)
        time.sleep(min(interval_s, remaining))


async def wait_until_async(
    predicate: Callable[[], T | Awaitable[T]],
    *,
    timeout_s: float,
    what: str,
    interval_s: float = DEFAULT_INTERVAL_S,
) -> T:
    """`wait_until` on the event loop; `predicate` may be a plain or a coroutine function.

    A call of `predicate` still running STRAGGLER_S after the deadline is cancelled and the wait
    fails."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    last: object = None
    while True:
        remaining = deadline - loop.time()
        value = predicate()
        if inspect.isawaitable(value):
            try:
                value = await asyncio.wait_for(value, max(remaining, 0.0) + STRAGGLER_S)
            except TimeoutError:
                raise WaitTimeout(
                    f"{what} (the last check never returned)", timeout_s, last
                ) from None
        last = value
        if value:
            return value
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise WaitTimeout(what, timeout_s, last)
        await asyncio.sleep(min(interval_s, remaining))


def wait_for_path(
    path: Path,
    *,
    timeout_s: float,
    process: subprocess.Popen[bytes] | subprocess.Popen[str] | None = None,
    log: Path | None = None,
) -> Path:
    """Wait until `path` exists (a file, socket or directory) and return it.

    With `process`, fail at once with ProcessExited when it exits first, quoting the end of `log`.
    """
    path = Path(path)

    def exists() -> bool:
        if process is not None and process.poll() is not None:
            raise ProcessExited(
                f"{process.args!r} exited with {process.returncode} before {path} appeared"
                + (f"; end of {log}:\n{log_tail(log)}" if log is not None else "")
            )
        return path.exists()

    wait_until(exists, timeout_s=timeout_s, what=f"{path} to exist")
    return path


def pid_gone(pid: int) -> bool:
    """Whether process `pid` has exited; reaps it when it is our child, counts a zombie as gone."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def wait_for_exit(pid: int, *, timeout_s: float, what: str | None = None) -> None:
    """Wait until process `pid` is gone (see `pid_gone`)."""
    wait_until(lambda: pid_gone(pid), timeout_s=timeout_s, what=what or f"process {pid} to exit")


def log_tail(log: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last `lines` lines of `log`, or a note that there is none."""
    try:
        text = Path(log).read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])
