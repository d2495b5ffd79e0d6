"""Applying a reloaded config in-process: which services restart, start, stop or stay."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from firmware.config import load_config
from firmware.config.schema import Config, Console, Logging
from firmware.daemon.app import Daemon
from firmware.daemon.logs import LogControl
from firmware.daemon.service import DaemonContext
from firmware.daemon.supervisor import RestartPolicy
from firmware.daemon.wiring import ServiceEntry, Wiring
from firmware.errors import ConfigError
from firmware.identity.modules import ModuleKey
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


class Tunable(Counting):
    """Takes a new config in place, answering from `script` in turn: a bool or an error."""

    name = "tunable"

    def __init__(self, runs: list[str], script: list[bool | Exception], seen: list[Config]) -> None:
        super().__init__(runs)
        self.script = script
        self.seen = seen

    async def reconfigure(self, config: Config) -> bool:
        self.seen.append(config)
        answer = self.script.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


class TunableWiring(Wiring):
    """The real wiring (its routes), with one reconfigurable double."""

    __test__ = False

    def __init__(self, ctx: DaemonContext) -> None:
        super().__init__(ctx)
        self.runs: list[str] = []
        self.script: list[bool | Exception] = []
        self.seen: list[Config] = []
        self.catalogue = (
            ServiceEntry(
                "tunable", lambda ctx: Tunable(self.runs, self.script, self.seen), ("runtime",)
            ),
        )


async def test_a_changed_service_is_reconfigured_in_place_and_restarted_only_when_it_cannot_be(
    make_daemon: MakeDaemon, serving: Serving
) -> None:
    config = Config(hostname="gw1")
    daemon = make_daemon(config, wire=TunableWiring)
    async with serving(daemon):
        wiring = daemon.wiring
        assert isinstance(wiring, TunableWiring)
        first = daemon.supervisor.service("tunable")

        def network(name: str) -> Config:
            return dataclasses.replace(
                config, runtime=dataclasses.replace(config.runtime, network=name)
            )

        wiring.script[:] = [True]
        await daemon._apply(network("a"))
        in_place = (daemon.supervisor.service("tunable") is first, wiring.runs.count("tunable"))
        assert wiring.seen == [network("a")]

        wiring.script[:] = [ConfigError("the new network does not exist", hint="create it")]
        await daemon._apply(network("b"))
        refused = (daemon.state(), daemon._status_line(), daemon.supervisor.service("tunable"))

        wiring.script[:] = [True]
        await daemon._apply(network("b"))  # the same config again: tried again, now applied
        retried = (len(wiring.seen), daemon.state(), daemon._status_line())

        wiring.script[:] = [False]
        await daemon._apply(network("c"))
        await settle(lambda: wiring.runs.count("tunable") == 2, "the restart it asked for")
        after_false = daemon.supervisor.service("tunable")

        wiring.script[:] = [RuntimeError("a bug")]
        await daemon._apply(network("d"))
        await settle(lambda: wiring.runs.count("tunable") == 3, "the restart after a bug")

        await daemon._apply(dataclasses.replace(network("d"), hostname="gw2"))
        unchanged = len(wiring.seen)

    assert in_place == (True, 1), "a reconfigured service must not restart"
    assert refused == (
        "degraded",
        "degraded: tunable kept its previous configuration",
        first,
    ), "a service that refuses a config keeps running as it was"
    assert retried == (3, "running", "running: 1 services")
    assert after_false is not first
    assert unchanged == 5, "a service whose sections did not change is left alone"


def keys_config(path: Path, root: Path, keys: str) -> Path:
    path.write_text(
        'hostname = "gw1"\n\n'
        f'[paths]\ndata_dir = "{root}/data"\nrun_dir = "{root}/run"\n\n'
        f'[console]\ndevice = "none"\n\n{keys}'
    )
    path.chmod(0o600)
    return path


async def test_a_key_configuration_change_keeps_the_key_service_and_every_holder(
    tmp_path: Path, make_daemon: MakeDaemon, serving: Serving
) -> None:
    config_file = keys_config(tmp_path / "config.toml", tmp_path, "")
    daemon = make_daemon(load_config(config_file), config_file=config_file)
    async with serving(daemon):
        services = daemon.services
        await wait_until_async(
            lambda: services.workload is not None and services.workload.describe()["ready"] is True,
            timeout_s=SETTLE_S,
            what="the workload service",
        )
        keys_service, certs, workload = services.keys, services.certs, services.workload
        assert keys_service is not None and workload is not None
        key_service = keys_service.current()
        identities = workload.current()
        genid = (await identities.create("m")).generation_id
        before = await identities.sign("m", genid, ModuleKey.PRIMARY, b"data")

        keys_config(config_file, tmp_path, '[keys.backends]\nspare = "file"\n')
        assert await daemon.reload()
        applied = (services.keys, services.certs, services.workload, keys_service.current())
        after_change = await identities.sign("m", genid, ModuleKey.PRIMARY, b"data")

        unusable = '[keys]\ndefault_backend = "tpm"\n[tpm]\ntcti = "device:/nonexistent/tpm9"\n'
        keys_config(config_file, tmp_path, unusable)
        assert await daemon.reload()
        refused = (daemon.state(), keys_service.current().default_backend)
        why = daemon.unapplied.get("keys", "")
        after_refusal = await identities.sign("m", genid, ModuleKey.PRIMARY, b"data")

        keys_config(config_file, tmp_path, "")
        assert await daemon.reload()
        recovered = daemon.state()

    assert applied == (keys_service, certs, workload, key_service), "nothing was replaced"
    assert before == after_change == after_refusal
    assert refused == ("degraded", "file"), "an unusable key config is refused, the old one kept"
    assert "/nonexistent/tpm9" in why
    assert recovered == "running"
