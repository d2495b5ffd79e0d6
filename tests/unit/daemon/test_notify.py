"""sd_notify: datagrams to NOTIFY_SOCKET (paths and abstract names), the watchdog timer."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from pathlib import Path

import pytest

from firmware.daemon.notify import Notifier


def listener(address: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(2)
    return sock


def test_ready_and_status_to_a_path(tmp_path: Path) -> None:
    path = str(tmp_path / "notify.sock")
    with listener(path) as sock:
        notifier = Notifier.from_env({"NOTIFY_SOCKET": path})
        notifier.ready("running: 2 services")
        notifier.stopping()
        notifier.close()
        assert sock.recv(4096) == b"READY=1\nSTATUS=running: 2 services"
        assert sock.recv(4096) == b"STOPPING=1\nSTATUS=stopping"


def test_abstract_socket_name() -> None:
    name = f"edgekeeper-test-{os.getpid()}"
    with listener("\0" + name) as sock:
        notifier = Notifier.from_env({"NOTIFY_SOCKET": "@" + name})
        assert notifier.send(STATUS="hello")
        notifier.close()
        assert sock.recv(4096) == b"STATUS=hello"


def test_without_notify_socket_nothing_is_sent() -> None:
    notifier = Notifier.from_env({})
    assert not notifier.enabled
    assert notifier.send(READY=1) is False


def test_watchdog_needs_usec_and_matching_pid() -> None:
    assert Notifier.from_env({"NOTIFY_SOCKET": "/x"}).watchdog_usec is None
    assert Notifier.from_env({"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "100"}).watchdog_usec == 100
    other = {"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "100", "WATCHDOG_PID": "1"}
    assert Notifier.from_env(other).watchdog_usec is None


async def test_watchdog_pings_at_half_the_interval(tmp_path: Path) -> None:
    path = str(tmp_path / "notify.sock")
    with listener(path) as sock:
        sock.setblocking(False)
        notifier = Notifier.from_env({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"})
        loop = asyncio.get_running_loop()
        assert notifier.start_watchdog(loop) == 0.1
        # Time passing is the subject: count the pings sent in 0.35 s.
        await asyncio.sleep(0.35)
        notifier.close()
        pings = []
        while True:
            try:
                pings.append(sock.recv(64))
            except BlockingIOError:
                break
        assert pings.count(b"WATCHDOG=1") in (4, 5)
        # Time passing is the subject: no ping comes after close.
        await asyncio.sleep(0.15)
        try:
            late = sock.recv(64)
        except BlockingIOError:
            late = None
        assert late is None, "the timer must stop on close"


async def test_no_watchdog_timer_without_usec(tmp_path: Path) -> None:
    notifier = Notifier.from_env({"NOTIFY_SOCKET": str(tmp_path / "none.sock")})
    loop = asyncio.get_running_loop()
    handles_before = len(loop._scheduled)  # type: ignore[attr-defined]
    assert notifier.start_watchdog(loop) is None
    assert len(loop._scheduled) == handles_before  # type: ignore[attr-defined]


def test_unreachable_manager_is_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = str(tmp_path / "later.sock")
    notifier = Notifier.from_env({"NOTIFY_SOCKET": path})
    with caplog.at_level(logging.INFO):
        assert notifier.send(WATCHDOG=1) is False
        assert notifier.send(WATCHDOG=1) is False
        with listener(path) as sock:
            assert notifier.send(WATCHDOG=1) is True
            assert sock.recv(64) == b"WATCHDOG=1"
    notifier.close()
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["cannot notify the service manager", "service manager reachable again"]
