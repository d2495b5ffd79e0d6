"""The console as a daemon service: opens the configured device, shows the daemon's log lines,
runs the shared command table (`command_table_runner`) against the daemon's router."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
from dataclasses import dataclass
from types import SimpleNamespace

import pytest

from firmware import __version__
from firmware.cli import terminal as cli_terminal
from firmware.config.schema import Console
from firmware.console.service import ConsoleService, command_table_runner
from firmware.daemon.logs import LogControl
from firmware.errors import DeviceError
from firmware.executor import BoundedExecutor

from .terminal import Terminal


@dataclass(frozen=True)
class Result:
    text: str
    exit_code: int = 0


def context(tmp_path, device="pty", **console):
    config = SimpleNamespace(
        hostname="gateway-7",
        console=Console(device=device, baud=115200, prompt="edgekeeper> ", **console),
        paths=SimpleNamespace(run_dir=str(tmp_path), data_dir=str(tmp_path)),
    )
    logs = LogControl(level="info", stream=io.StringIO())
    return SimpleNamespace(config=config, executor=BoundedExecutor(), logs=logs)


async def stop_console(ctx, task, terminal) -> None:
    """End a console test: the service's task, the test terminal, the logs and the executor."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    terminal.close()
    ctx.logs.close()
    ctx.executor.shutdown()


def console_service(ctx, run_command):
    return ConsoleService(ctx.config, ctx.executor, ctx.logs, run_command)


async def echo_command(argv, *, read_only=False, terminal=None):
    return Result(f"you said {argv}")


def test_service_serves_the_pty_and_prints_daemon_logs(tmp_path):
    async def body():
        ctx = context(tmp_path, log_level="info")
        ctx.logs.attach_loop(asyncio.get_running_loop())
        service = console_service(ctx, echo_command)
        assert service.name == "console"
        await service.prepare()
        task = asyncio.create_task(service.run())
        terminal = Terminal(tmp_path)
        try:
            banner = await terminal.expect("edgekeeper> ")
            assert f"edgekeeper {__version__} console on gateway-7".encode() in banner
            terminal.type("version\r")
            assert b"you said ['version']" in await terminal.expect("edgekeeper> ")
            assert service.describe()["port"].startswith("pty /dev/pts/")
            logging.getLogger("edgekeeper.runtime").warning("agent restarted")
            await terminal.expect("WARNING runtime: agent restarted\r\n")
            await asyncio.get_running_loop().run_in_executor(
                None, logging.getLogger("edgekeeper.keys").info, "from a thread"
            )
            await terminal.expect("INFO keys: from a thread\r\nedgekeeper> ")
        finally:
            await stop_console(ctx, task, terminal)
        assert ctx.logs.sinks() == []
        assert not (tmp_path / "console.pty").exists()

    asyncio.run(body())


def test_command_table_runner_serves_the_shared_command_table(tmp_path):
    from firmware.api.router import Router

    async def body():
        ctx = context(tmp_path)
        service = console_service(ctx, command_table_runner(Router(), asyncio.to_thread))
        await service.prepare()
        task = asyncio.create_task(service.run())
        terminal = Terminal(tmp_path)
        try:
            await terminal.expect("type help\r\nedgekeeper> ")
            terminal.type("help\r")
            listing = await terminal.expect("edgekeeper> ")
            for name in (b"version", b"status", b"log-level"):
                assert name in listing
            terminal.type("version\r")
            assert __version__.encode() in await terminal.expect("edgekeeper> ")
            terminal.type("status\r")  # no status route in this bare router: an error line
            assert b"error: " in await terminal.expect("edgekeeper> ")
            terminal.type("version\r")
            assert __version__.encode() in await terminal.expect("edgekeeper> ")
        finally:
            await stop_console(ctx, task, terminal)

    asyncio.run(body())


def test_missing_device_fails_prepare_with_the_fix(tmp_path):
    async def body():
        ctx = context(tmp_path, device="/dev/ttyUSB-missing")
        try:
            with pytest.raises(DeviceError, match="/dev/ttyUSB-missing does not exist"):
                await console_service(ctx, echo_command).prepare()
        finally:
            ctx.logs.close()
            ctx.executor.shutdown()

    asyncio.run(body())


def test_device_none_returns_at_once(tmp_path):
    async def body():
        ctx = context(tmp_path, device="none")
        try:
            await asyncio.wait_for(console_service(ctx, echo_command).run(), 5)
        finally:
            ctx.logs.close()
            ctx.executor.shutdown()
        assert not (tmp_path / "console.pty").exists()

    asyncio.run(body())


PASSWORD = "gate-keeper-7"


def test_with_a_password_hash_the_console_asks_for_a_login_checked_with_scrypt(tmp_path):
    from firmware.config.password_hash import PasswordHash

    async def body():
        hashed = PasswordHash.make(PASSWORD).text()
        ctx = context(
            tmp_path, password_hash=hashed, login_attempts=1, lockout="1m", log_level="info"
        )
        service = console_service(ctx, echo_command)
        await service.prepare()
        task = asyncio.create_task(service.run())
        terminal = Terminal(tmp_path)
        try:
            await terminal.expect("console on gateway-7; log in to use it\r\nlogin: ")
            terminal.type(f"tech\r{PASSWORD}\r")
            await terminal.expect("logged in (logout ends it)\r\nedgekeeper> ")
            await terminal.expect("INFO console: login name=tech\r\nedgekeeper> ")
            assert service.describe()["logged_in"] is True
            terminal.type("version\r")
            assert b"you said ['version']" in await terminal.expect("edgekeeper> ")
            terminal.type("logout\r")
            await terminal.expect("logged out\r\nlogin: ")
            terminal.type("tech\rnot-the-password\r")
            await terminal.expect("console locked for 1m 00s")
            assert service.describe()["logged_in"] is False
            # The port dies and the supervisor runs the same service again: still locked.
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            terminal.close()
            await service.prepare()
            task = asyncio.create_task(service.run())
            terminal = Terminal(tmp_path)
            await terminal.expect("login: ")
            terminal.type("tech\r")
            await terminal.expect("console locked: try again in ")
            assert PASSWORD.encode() not in terminal.seen
            assert hashed.encode() not in terminal.seen
        finally:
            await stop_console(ctx, task, terminal)

    asyncio.run(body())


def test_a_bad_password_hash_stops_the_start_naming_the_setting(tmp_path):
    from firmware.errors import ConfigError

    async def body():
        secret_looking = (
            "scrypt$n=1048576,r=8,p=1$c2FsdHNhbHRzYWx0c2FsdA==$ZGlnZXN0ZGlnZXN0ZGlnZXN0"
        )
        ctx = context(tmp_path, password_hash=secret_looking)
        try:
            with pytest.raises(ConfigError) as raised:
                await console_service(ctx, echo_command).prepare()
        finally:
            ctx.logs.close()
            ctx.executor.shutdown()
        rendered = raised.value.render()
        assert rendered.startswith("[console] password_hash is not a usable hash: n must be")
        assert "c2FsdHNhbHRzYWx0c2FsdA" not in rendered
        assert not (tmp_path / "console.pty").exists()  # refused before the port opened

    asyncio.run(body())


def test_read_only_runs_only_commands_that_change_nothing():
    from firmware.api.router import Router
    from firmware.errors import Forbidden

    async def body():
        run = command_table_runner(Router(), asyncio.to_thread)

        async def run_command(argv, *, read_only):
            return await run(argv, read_only=read_only, terminal=cli_terminal.Terminal(80, print))

        version = await run_command(["version"], read_only=True)
        assert version.text.startswith(f"edgekeeper {__version__}")
        listing = await run_command(["help"], read_only=True)
        assert "log-level" in listing.text
        usage = await run_command(["log-level", "loud"], read_only=True)
        assert usage.exit_code == 2 and "invalid choice" in usage.text
        for argv in (["log-level", "debug"], ["restart", "agent"], ["certs", "renew", "edge-ca"]):
            with pytest.raises(Forbidden) as refused:
                await run_command(argv, read_only=True)
            assert refused.value.render().endswith("changes the gateway: log in first (login)")
        answered = await run_command(["log-level", "debug"], read_only=False)
        assert "log in first" not in answered.text  # no route in this bare router: another error

    asyncio.run(body())


def test_the_service_completes_commands_and_module_names_from_the_router(tmp_path):
    from firmware.api.model import ApiResponse
    from firmware.api.router import Router
    from firmware.console.service import command_completer

    async def modules(request):
        return ApiResponse(200, {"modules": [{"name": "agent"}, {"name": "hub"}]})

    async def body():
        router = Router()
        router.add("GET", "/modules", modules)
        ctx = context(tmp_path, columns=80)
        service = ConsoleService(
            ctx.config, ctx.executor, ctx.logs, echo_command, command_completer(router)
        )
        await service.prepare()
        task = asyncio.create_task(service.run())
        terminal = Terminal(tmp_path)
        try:
            await terminal.expect("edgekeeper> ")
            terminal.type("resta\ta\t")
            await terminal.expect("restart agent ")
            terminal.type("\r")
            assert b"you said ['restart', 'agent']" in await terminal.expect("edgekeeper> ")
            terminal.type("log m\t\r")
            await terminal.expect("console log muted")
        finally:
            await stop_console(ctx, task, terminal)

    asyncio.run(body())
