"""Applying a reloaded config in-process: which services restart, start, stop or stay."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from firmware.config.schema import Config, Console, Logging
from firmware.daemon.app import Daemon
from firmware.daemon.lock import InstanceLock
from firmware.daemon.logs import LogControl
from firmware.daemon.services import ServiceEntry
from firmware.daemon.supervisor import RestartPolicy
from firmware.store.state import StateStore

FAST = RestartPolicy(initial_delay=0.01, max_delay=0.02, max_failures=3, failure_window=10)
RUNS: list[str] = []


class Counting:
    """Serves until cancelled; counts its runs by name."""

    name = "counting"

    async def run(self, ctx: object) -> None:
        RUNS.append(self.name)
        await asyncio.Event().wait()


class Broken:
    name = "broken"

    async def run(self, ctx: object) -> None:
        RUNS.append(self.name)
        raise RuntimeError("always")


class ConsoleLike(Counting):
    name = "consolelike"


CATALOGUE = (
    ServiceEntry("counting", f"{__name__}:Counting", ("runtime",)),
    ServiceEntry("broken", f"{__name__}:Broken", ("tpm",)),
    ServiceEntry(
        "consolelike",
        f"{__name__}:ConsoleLike",
        ("console",),
        lambda config: config.console.device != "none",
    ),
)


@pytest.fixture
def logs() -> Iterator[LogControl]:
    root = logging.getLogger()
    before = root.level
    control = LogControl(stream=io.StringIO())
    yield control
    control.close()
    root.setLevel(before)


def make_daemon(tmp_path: Path, logs: LogControl, config: Config) -> Daemon:
    daemon = Daemon(
        None,
        None,
        config,
        logs,
        InstanceLock(tmp_path),
        StateStore(tmp_path),
        (False, False),
        catalogue=CATALOGUE,
    )
    daemon.supervisor.policy = FAST
    return daemon


async def settle(daemon: Daemon, predicate) -> None:
    for _ in range(300):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never settled: {daemon.supervisor.snapshot()}")


async def test_reload_restarts_changed_and_failed_services(
    tmp_path: Path, logs: LogControl
) -> None:
    RUNS.clear()
    config = Config(hostname="gw1")
    daemon = make_daemon(tmp_path, logs, config)
    daemon.ctx = daemon._context()
    await daemon._start_services()
    await settle(daemon, lambda: daemon.supervisor.degraded)
    assert daemon.state() == "degraded"
    assert RUNS.count("broken") == FAST.max_failures and RUNS.count("counting") == 1

    same = dataclasses.replace(config, logging=Logging(level="debug"))
    await daemon._apply(same)
    await settle(daemon, lambda: RUNS.count("broken") > FAST.max_failures)
    assert RUNS.count("counting") == 1, "an unchanged service must not restart"
    assert logs.level == "debug"
    assert daemon.ctx.config is same

    changed = dataclasses.replace(
        same,
        runtime=dataclasses.replace(same.runtime, network="other"),
        console=Console(device="loop://"),
    )
    await daemon._apply(changed)
    await settle(daemon, lambda: RUNS.count("counting") == 2 and "consolelike" in RUNS)
    assert sorted(daemon.entries) == ["broken", "consolelike", "counting"]

    await daemon._apply(dataclasses.replace(changed, console=Console(device="none")))
    assert "consolelike" not in daemon.supervisor.names()
    assert daemon.services.get("consolelike") is None
    assert await daemon.supervisor.stop_all(1) == []


async def test_pinned_log_level_survives_reload(tmp_path: Path, logs: LogControl) -> None:
    config = Config(hostname="gw1")
    daemon = make_daemon(tmp_path, logs, config)
    daemon._pinned_logging = (True, False)
    daemon.ctx = daemon._context()
    logs.set_level("warning")
    await daemon._apply(dataclasses.replace(config, logging=Logging(level="debug", format="json")))
    assert logs.level == "warning"
    assert logs.format == "json"


async def test_degraded_daemon_tells_the_service_manager(
    tmp_path: Path, logs: LogControl, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(tmp_path / "notify.sock")
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as manager:
        manager.bind(path)
        manager.setblocking(False)
        daemon = make_daemon(tmp_path, logs, Config(hostname="gw1"))
        daemon.ctx = daemon._context()
        await daemon._start_services()
        await settle(daemon, lambda: daemon.supervisor.degraded)
        assert await daemon.supervisor.stop_all(1) == []
        daemon.notifier.close()
        messages = []
        while True:
            try:
                messages.append(manager.recv(4096))
            except BlockingIOError:
                break
    assert b"STATUS=degraded: broken failed" in messages
    assert daemon._status_line() == "degraded: broken failed"
