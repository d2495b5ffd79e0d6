"""Applying a reloaded config in-process: which services restart, start, stop or stay."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from firmware.config.schema import Config, Console, Logging
from firmware.daemon.app import Daemon
from firmware.daemon.logs import LogControl
from firmware.daemon.service import DaemonContext
from firmware.daemon.supervisor import RestartPolicy
from firmware.daemon.wiring import ServiceEntry, Wiring
from tests.peers.waiting import wait_until_async

FAST = RestartPolicy(initial_delay=0.01, max_delay=0.02, max_failures=3, failure_window=10)
SETTLE_S = 3.0

MakeDaemon = Callable[..., Daemon]
Serving = Callable[[Daemon], contextlib.AbstractAsyncContextManager[Daemon]]


class Counting:
    """Serves until cancelled; counts its runs by name in `runs`."""

    name = "counting"

    def __init__(self, runs: list[str]) -> None:
        self.runs = runs

    async def prepare(self) -> None:
        pass

    async def run(self) -> None:
        self.runs.append(self.name)
        await asyncio.Event().wait()

    def describe(self) -> dict[str, object]:
        return {}


class Broken(Counting):
    name = "broken"

    async def run(self) -> None:
        self.runs.append(self.name)
        raise RuntimeError("always")


class ConsoleLike(Counting):
    name = "consolelike"


class TestWiring(Wiring):
    """The real wiring (its routes), with a catalogue of the doubles above."""

    __test__ = False

    def __init__(self, ctx: DaemonContext) -> None:
        super().__init__(ctx)
        self.runs: list[str] = []
        self.catalogue = (
            ServiceEntry("counting", lambda ctx: Counting(self.runs), ("runtime",)),
            ServiceEntry("broken", lambda ctx: Broken(self.runs), ("tpm",)),
            ServiceEntry(
                "consolelike",
                lambda ctx: ConsoleLike(self.runs),
                ("console",),
                lambda config: config.console.device != "none",
            ),
        )


def fast_daemon(make_daemon: MakeDaemon, config: Config) -> Daemon:
    daemon = make_daemon(config, wire=TestWiring)
    daemon.supervisor.policy = FAST
    return daemon


def runs(daemon: Daemon) -> list[str]:
    assert isinstance(daemon.wiring, TestWiring)
    return daemon.wiring.runs


async def settle(predicate: Callable[[], bool], what: str) -> None:
    await wait_until_async(predicate, timeout_s=SETTLE_S, what=what)


async def test_reload_restarts_changed_and_failed_services(
    make_daemon: MakeDaemon, serving: Serving, logs: LogControl
) -> None:
    config = Config(hostname="gw1")
    daemon = fast_daemon(make_daemon, config)
    async with serving(daemon):
        assert daemon.ctx is not None
        routes = daemon.ctx.router.routes()
        started = runs(daemon)
        await settle(lambda: daemon.supervisor.degraded, "the broken service given up")
        assert daemon.state() == "degraded"
        assert started.count("broken") == FAST.max_failures and started.count("counting") == 1

        same = dataclasses.replace(config, logging=Logging(level="debug"))
        await daemon._apply(same)
        await settle(
            lambda: started.count("broken") > FAST.max_failures,
            "the failed service restarted by the reload",
        )
        assert started.count("counting") == 1, "an unchanged service must not restart"
        assert logs.level == "debug"
        assert daemon.ctx.config is same

        changed = dataclasses.replace(
            same,
            runtime=dataclasses.replace(same.runtime, network="other"),
            console=Console(device="pty"),
        )
        await daemon._apply(changed)
        await settle(
            lambda: started.count("counting") == 2 and "consolelike" in started,
            "the changed service restarted and the enabled one started",
        )
        assert sorted(daemon.entries) == ["broken", "consolelike", "counting"]

        await daemon._apply(dataclasses.replace(changed, console=Console(device="none")))
        assert "consolelike" not in daemon.supervisor.names()
        assert "consolelike" not in daemon.entries
        assert daemon.supervisor.service("consolelike") is None
        assert daemon.ctx.router.routes() == routes, "reloads register no route"


async def test_pinned_log_level_survives_reload(
    make_daemon: MakeDaemon, serving: Serving, logs: LogControl
) -> None:
    config = Config(hostname="gw1")
    daemon = fast_daemon(make_daemon, config)
    daemon._pinned_logging = (True, False)
    async with serving(daemon):
        logs.set_level("warning")
        await daemon._apply(
            dataclasses.replace(config, logging=Logging(level="debug", format="json"))
        )
        assert logs.level == "warning"
        assert logs.format == "json"


async def test_degraded_daemon_tells_the_service_manager(
    tmp_path: Path, make_daemon: MakeDaemon, serving: Serving, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(tmp_path / "notify.sock")
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as manager:
        manager.bind(path)
        manager.setblocking(False)
        daemon = fast_daemon(make_daemon, Config(hostname="gw1"))
        async with serving(daemon):
            await settle(lambda: daemon.supervisor.degraded, "the daemon degraded")
            status_line = daemon._status_line()
        messages = []
        while True:
            try:
                messages.append(manager.recv(4096))
            except BlockingIOError:
                break
    assert b"STATUS=degraded: broken failed" in messages
    assert status_line == "degraded: broken failed"
