"""A bounded pool of logged-in sessions with one token, shared by the executor's threads.

Each call gets a session of its own for its duration (PKCS#11 sessions hold one operation at a
time). Sessions are opened on demand up to `size`; further callers wait for one to come back.
A call that finds its session gone (token removed or reset, session closed, login lost) drops
that session and every idle one, and runs once more on a freshly opened session.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from firmware.keys.errors import KeyBackendUnavailable
from firmware.keys.pkcs11.errors import Pkcs11Error

if TYPE_CHECKING:
    from firmware.keys.pkcs11.binding import Session

T = TypeVar("T")

CLOSE_WAIT_S = 10.0


class SessionPool:
    """Sessions from `open_session` (which opens and logs in), at most `size` at a time."""

    def __init__(self, open_session: Callable[[], Session], size: int) -> None:
        if size < 1:
            raise ValueError("a session pool needs room for one session")
        self._open_session = open_session
        self._size = size
        self._idle: list[Session] = []
        self._count = 0
        self._closed = False
        self._changed = threading.Condition()

    def run(self, operation: Callable[[Session], T]) -> T:
        """`operation(session)` on a session of its own; once more on a new one if it died."""
        try:
            return self._attempt(operation)
        except Pkcs11Error as err:
            if not err.session_lost:
                raise
        return self._attempt(operation)

    def close(self) -> None:
        """Close idle sessions now and busy ones as they come back (waits up to CLOSE_WAIT_S)."""
        with self._changed:
            self._closed = True
            idle, self._idle = self._idle, []
            self._count -= len(idle)
            self._changed.notify_all()
        for session in idle:
            session.close()
        with self._changed:
            self._changed.wait_for(lambda: self._count == 0, timeout=CLOSE_WAIT_S)

    def _attempt(self, operation: Callable[[Session], T]) -> T:
        session = self._acquire()
        try:
            result = operation(session)
        except Pkcs11Error as err:
            if err.session_lost:
                self._drop(session)
            else:
                self._release(session)
            raise
        except BaseException:
            self._release(session)
            raise
        self._release(session)
        return result

    def _acquire(self) -> Session:
        with self._changed:
            while True:
                if self._closed:
                    raise KeyBackendUnavailable("the PKCS#11 key backend is closed")
                if self._idle:
                    return self._idle.pop()
                if self._count < self._size:
                    self._count += 1
                    break
                self._changed.wait()
        try:
            return self._open_session()
        except BaseException:
            with self._changed:
                self._count -= 1
                self._changed.notify()
            raise

    def _release(self, session: Session) -> None:
        with self._changed:
            if not self._closed:
                self._idle.append(session)
                self._changed.notify()
                return
            self._count -= 1
            self._changed.notify_all()
        session.close()

    def _drop(self, session: Session) -> None:
        """Forget a dead session and the idle ones, which died with it as a rule."""
        with self._changed:
            dead = [session, *self._idle]
            self._idle = []
            self._count -= len(dead)
            self._changed.notify_all()
        for each in dead:
            each.close()
