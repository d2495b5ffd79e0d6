"""tests/peers/waiting.py: the value is returned, the deadline honoured, a timeout explained."""

from __future__ import annotations

import asyncio
import itertools
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.peers.waiting import (
    ProcessExited,
    WaitTimeout,
    pid_gone,
    wait_for_exit,
    wait_for_path,
    wait_until,
    wait_until_async,
)

SLACK_S = 3.0  # far below the 10 s intervals used, far above a loaded machine's scheduling delays


def counter_reaching(n: int):
    """A predicate returning 0, 1, 2, ... and `f"done {n}"` on its n-th call; counts its calls."""
    calls = itertools.count()

    def predicate() -> object:
        call = next(calls)
        return f"done {call}" if call == n else 0

    return predicate


def test_returns_the_first_truthy_value() -> None:
    assert wait_until(counter_reaching(3), timeout_s=5, what="three", interval_s=0.001) == "done 3"


def test_does_not_sleep_when_the_predicate_already_holds() -> None:
    began = time.monotonic()
    assert wait_until(lambda: 42, timeout_s=5, what="x", interval_s=10) == 42
    assert time.monotonic() - began < SLACK_S


def test_fails_naming_what_and_the_last_value() -> None:
    values = iter(range(10**6))
    with pytest.raises(WaitTimeout) as caught:
        wait_until(
            lambda: [] if next(values) < 3 else "", timeout_s=0.1, what="the pump", interval_s=0.001
        )
    message = str(caught.value)
    assert "waiting for the pump" in message
    assert "after 0.1 s" in message
    assert "last value: ''" in message
    assert isinstance(caught.value, AssertionError)
    assert caught.value.what == "the pump" and caught.value.last == ""


def test_honours_the_deadline() -> None:
    began = time.monotonic()
    with pytest.raises(WaitTimeout):
        wait_until(lambda: False, timeout_s=0.3, what="never", interval_s=10)
    elapsed = time.monotonic() - began
    assert 0.3 <= elapsed < 0.3 + SLACK_S


def test_checks_once_more_at_the_deadline() -> None:
    """A condition that becomes true during the last interval is still seen."""
    became_true = time.monotonic() + 0.2
    assert wait_until(
        lambda: time.monotonic() >= became_true, timeout_s=0.25, what="late", interval_s=10
    )


def test_a_predicate_that_raises_stops_the_wait_at_once() -> None:
    def broken() -> bool:
        raise ProcessExited("the daemon died")

    began = time.monotonic()
    with pytest.raises(ProcessExited, match="the daemon died"):
        wait_until(broken, timeout_s=30, what="never")
    assert time.monotonic() - began < SLACK_S


def test_sees_a_change_made_by_another_thread() -> None:
    flag = threading.Event()
    timer = threading.Timer(0.05, flag.set)
    timer.start()
    try:
        assert wait_until(flag.is_set, timeout_s=5, what="the flag") is True
    finally:
        timer.join()


def test_async_returns_the_value_of_a_coroutine_predicate() -> None:
    calls = counter_reaching(2)

    async def predicate() -> object:
        await asyncio.sleep(0)
        return calls()

    result = asyncio.run(wait_until_async(predicate, timeout_s=5, what="two", interval_s=0.001))
    assert result == "done 2"


def test_async_accepts_a_plain_predicate_and_lets_the_loop_run() -> None:
    async def scenario() -> str:
        box: list[str] = []
        asyncio.get_running_loop().call_later(0.05, box.append, "ready")
        return await wait_until_async(lambda: box and box[0], timeout_s=5, what="the box")

    assert asyncio.run(scenario()) == "ready"


def test_async_fails_naming_what_and_honours_the_deadline() -> None:
    async def never() -> int:
        return 0

    began = time.monotonic()
    with pytest.raises(WaitTimeout, match=r"waiting for the queue; last value: 0"):
        asyncio.run(wait_until_async(never, timeout_s=0.2, what="the queue", interval_s=10))
    assert 0.2 <= time.monotonic() - began < 0.2 + SLACK_S


def test_async_cuts_off_a_predicate_that_never_returns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tests.peers.waiting.STRAGGLER_S", 0.1)

    async def hangs() -> bool:
        await asyncio.Event().wait()
        return True

    began = time.monotonic()
    with pytest.raises(WaitTimeout, match=re.escape("the reply (the last check never returned)")):
        asyncio.run(wait_until_async(hangs, timeout_s=0.1, what="the reply"))
    assert time.monotonic() - began < SLACK_S


def test_wait_for_path_returns_the_path_once_it_exists(tmp_path: Path) -> None:
    target = tmp_path / "ready"
    timer = threading.Timer(0.05, target.touch)
    timer.start()
    try:
        assert wait_for_path(target, timeout_s=5) == target
    finally:
        timer.join()


def test_wait_for_path_times_out_naming_the_path(tmp_path: Path) -> None:
    with pytest.raises(WaitTimeout, match=re.escape(f"waiting for {tmp_path / 'never'} to exist")):
        wait_for_path(tmp_path / "never", timeout_s=0.1)


def test_wait_for_path_fails_at_once_when_the_process_exits(tmp_path: Path) -> None:
    log = tmp_path / "child.log"
    log.write_text("starting\nfatal: no config\n")
    with subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"]) as child:
        began = time.monotonic()
        with pytest.raises(ProcessExited) as caught:
            wait_for_path(tmp_path / "sock", timeout_s=30, process=child, log=log)
    assert time.monotonic() - began < 10
    message = str(caught.value)
    assert "exited with 3" in message and str(tmp_path / "sock") in message
    assert message.endswith("fatal: no config")


def test_wait_for_exit_reaps_a_child_that_exits() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.2)"])
    assert not pid_gone(child.pid)
    wait_for_exit(child.pid, timeout_s=10)
    assert pid_gone(child.pid)
    child.wait(timeout=1)  # already reaped: Popen learns of it without blocking


def test_wait_for_exit_fails_on_a_process_that_stays() -> None:
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as child:
        try:
            with pytest.raises(WaitTimeout, match=f"process {child.pid} to exit"):
                wait_for_exit(child.pid, timeout_s=0.2)
        finally:
            child.kill()
