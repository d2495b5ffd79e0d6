"""sd_notify without libsystemd: READY, STATUS, STOPPING and the watchdog keep-alive.

The protocol is one datagram of `KEY=value` lines sent to the unix socket named by
NOTIFY_SOCKET (a path, or `@name` for the abstract namespace). Without NOTIFY_SOCKET every call
does nothing. The watchdog timer exists only when WATCHDOG_USEC is set (and WATCHDOG_PID, if
set, is ours): it sends WATCHDOG=1 at half the interval using a loop timer, nothing else wakes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Mapping

from firmware.logs import fields, get_logger

log = get_logger("notify")


class Notifier:
    """Sends state changes to the service manager."""

    def __init__(self, address: str | None, watchdog_usec: int | None = None) -> None:
        self.address = address
        self.watchdog_usec = watchdog_usec
        self._socket: socket.socket | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._failing = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Notifier:
        """A notifier for NOTIFY_SOCKET / WATCHDOG_USEC / WATCHDOG_PID in `env` (os.environ)."""
        env = os.environ if env is None else env
        address = env.get("NOTIFY_SOCKET") or None
        watchdog = None
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            watchdog = int(usec)
        return cls(address, watchdog)

    @property
    def enabled(self) -> bool:
        """True when a service manager listens."""
        return self.address is not None

    def send(self, **values: str | int) -> bool:
        """Send `KEY=value` lines, e.g. `send(READY=1, STATUS="running")`; True if delivered."""
        if self.address is None:
            return False
        message = "\n".join(f"{key}={value}" for key, value in values.items()).encode()
        target = self.address
        if target.startswith("@"):
            target = "\0" + target[1:]
        try:
            if self._socket is None:
                self._socket = socket.socket(
                    socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC
                )
                self._socket.setblocking(False)
            self._socket.sendto(message, target)
        except OSError as exc:
            if not self._failing:
                log.warning(
                    "cannot notify the service manager",
                    extra=fields(socket=self.address, error=exc.strerror or str(exc)),
                )
            self._failing = True
            return False
        if self._failing:
            log.info("service manager reachable again", extra=fields(socket=self.address))
            self._failing = False
        return True

    def ready(self, status: str) -> None:
        """READY=1 with a status line."""
        self.send(READY=1, STATUS=status)

    def status(self, status: str) -> None:
        """A new status line."""
        self.send(STATUS=status)

    def reloading(self) -> None:
        """RELOADING=1 (answered later by `ready`)."""
        self.send(RELOADING=1, STATUS="reloading configuration")

    def stopping(self) -> None:
        """STOPPING=1: the daemon is shutting down."""
        self.send(STOPPING=1, STATUS="stopping")

    def start_watchdog(self, loop: asyncio.AbstractEventLoop) -> float | None:
        """Arm the keep-alive timer if the manager asked for one; returns its interval (s)."""
        if self.watchdog_usec is None or not self.enabled:
            return None
        interval = self.watchdog_usec / 2_000_000

        def keep_alive() -> None:
            self.send(WATCHDOG=1)
            self._timer = loop.call_later(interval, keep_alive)

        keep_alive()
        return interval

    def close(self) -> None:
        """Stop the watchdog timer and close the socket."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._socket is not None:
            with contextlib.suppress(OSError):
                self._socket.close()
            self._socket = None
