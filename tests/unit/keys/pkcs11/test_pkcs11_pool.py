"""The session pool's own logic: bound, hand-out, dropping dead sessions, closing.

Sessions here are stand-ins recording what the pool does to them; the pool against a real
SoftHSM2 token is tested in tests/integration/keys/test_pkcs11_backend.py.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from firmware.keys.errors import KeyBackendUnavailable
from firmware.keys.pkcs11 import errors
from firmware.keys.pkcs11.pool import SessionPool


class StandInSession:
    def __init__(self, number: int) -> None:
        self.number = number
        self.closed = False

    def close(self) -> None:
        self.closed = True


class Opener:
    def __init__(self) -> None:
        self.numbers = itertools.count(1)
        self.opened: list[StandInSession] = []

    def __call__(self) -> StandInSession:
        session = StandInSession(next(self.numbers))
        self.opened.append(session)
        return session

    @property
    def live(self) -> int:
        """Sessions opened and not closed."""
        return sum(not session.closed for session in self.opened)


def test_sessions_are_reused_and_opened_on_demand() -> None:
    opener = Opener()
    pool = SessionPool(opener, size=3)
    first = pool.run(lambda session: session)
    second = pool.run(lambda session: session)
    assert first is second
    assert len(opener.opened) == 1
    assert opener.live == 1


def test_pool_never_exceeds_its_bound() -> None:
    opener = Opener()
    pool = SessionPool(opener, size=2)
    busy = 0
    peak = 0
    lock = threading.Lock()
    barrier = threading.Barrier(2, timeout=5)

    def work(session: StandInSession) -> int:
        nonlocal busy, peak
        with lock:
            busy += 1
            peak = max(peak, busy)
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait()
        with lock:
            busy -= 1
        return session.number

    with ThreadPoolExecutor(max_workers=6) as executor:
        numbers = list(executor.map(lambda _: pool.run(work), range(12)))
    assert peak == 2
    assert len(opener.opened) == 2
    assert set(numbers) == {1, 2}


def test_dead_session_is_dropped_and_the_call_runs_again() -> None:
    opener = Opener()
    pool = SessionPool(opener, size=2)
    calls: list[int] = []

    def operation(session: StandInSession) -> str:
        calls.append(session.number)
        if session.number == 1:
            raise errors.error_for(0xB3, "C_Sign", token="t")
        return "signed"

    assert pool.run(operation) == "signed"
    assert calls == [1, 2]
    assert opener.opened[0].closed
    assert not opener.opened[1].closed
    assert opener.live == 1


def test_dead_session_twice_raises() -> None:
    opener = Opener()
    pool = SessionPool(opener, size=2)

    def operation(session: StandInSession) -> None:
        raise errors.error_for(0xE0, "C_Sign", token="t")

    with pytest.raises(errors.TokenNotPresent):
        pool.run(operation)
    assert opener.live == 0


def test_other_errors_keep_the_session() -> None:
    opener = Opener()
    pool = SessionPool(opener, size=2)

    def operation(session: StandInSession) -> None:
        raise errors.error_for(0xC0, "C_Verify", token="t")

    with pytest.raises(errors.SignatureInvalid):
        pool.run(operation)
    with pytest.raises(ValueError):
        pool.run(lambda session: int("x"))
    assert len(opener.opened) == 1
    assert not opener.opened[0].closed
    assert opener.live == 1


def test_failed_open_frees_its_place() -> None:
    attempts = itertools.count()

    def opener() -> StandInSession:
        if next(attempts) == 0:
            raise errors.error_for(0xA0, "C_Login", token="t")
        return StandInSession(7)

    pool = SessionPool(opener, size=1)
    with pytest.raises(errors.PinIncorrect):
        pool.run(lambda session: session)
    assert pool.run(lambda session: session.number) == 7


def test_close_closes_sessions_and_refuses_new_calls() -> None:
    opener = Opener()
    pool = SessionPool(opener, size=2)
    pool.run(lambda session: None)
    pool.close()
    assert all(session.closed for session in opener.opened)
    assert opener.live == 0
    with pytest.raises(KeyBackendUnavailable, match="closed"):
        pool.run(lambda session: None)


def test_session_in_use_during_close_is_closed_on_return() -> None:
    opener = Opener()
    pool = SessionPool(opener, size=2)
    entered = threading.Event()
    leave = threading.Event()

    def slow(session: StandInSession) -> None:
        entered.set()
        leave.wait(5)

    worker = threading.Thread(target=pool.run, args=(slow,))
    worker.start()
    assert entered.wait(5)
    closer = threading.Thread(target=pool.close)
    closer.start()
    leave.set()
    worker.join(5)
    closer.join(5)
    assert opener.opened[0].closed
    assert opener.live == 0
