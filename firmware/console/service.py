"""The console as a daemon service: opens `[console] device`, serves a session, shows the logs.

`prepare` opens the port (so a missing UART stops the start with one clear line); `run` prints
the banner and prompt and serves the session until the daemon stops it, with the daemon's log
lines fed to the console through the log sink. Commands come from the CLI's command table,
executed in-process against the daemon's router: the console shows what the CLI shows.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from firmware import __version__
from firmware.console.port import ConsolePort, open_console_port
from firmware.console.session import CommandOutput, CommandRunner, ConsoleSession
from firmware.logs import get_logger

log = get_logger("console")


class ConsoleService:
    """The technician's console on the board's console UART (or the sim board's pty)."""

    name = "console"

    def __init__(self, run_command: CommandRunner | None = None) -> None:
        self._run_command = run_command
        self._port: ConsolePort | None = None
        self._session: ConsoleSession | None = None

    async def prepare(self, ctx: Any) -> None:
        """Open the console device; `DeviceError` names it and the fix when it cannot be."""
        if self._port is not None:
            return
        console = ctx.config.console
        self._port = await open_console_port(
            console.device, console.baud, Path(ctx.config.paths.run_dir), ctx.executor.run
        )

    async def run(self, ctx: Any) -> None:
        """Serve the console until cancelled; raises `DeviceError` if the port dies."""
        await self.prepare(ctx)
        port, self._port = self._port, None
        if port is None:
            log.info("console disabled ([console] device is none)")
            return
        config = ctx.config
        session = ConsoleSession(
            port,
            self._run_command or _command_table_runner(ctx),
            prompt=config.console.prompt,
            banner=f"edgekeeper {__version__} console on {config.hostname}; type help",
        )
        self._session = session
        remove_sink = ctx.logs.add_sink(session.post_log)
        try:
            await session.serve()
        finally:
            remove_sink()
            self._session = None
            port.close()

    def describe(self) -> dict[str, Any]:
        """Status detail: the port and how much output was dropped for want of a reader."""
        session = self._session
        if session is None:
            return {"port": None}
        return {
            "port": session.port_description,
            "dropped_log_lines": session.dropped_logs,
        }


def _command_table_runner(ctx: Any) -> CommandRunner:
    from firmware.cli.commands import InProcessInvoker, execute

    invoker = InProcessInvoker(ctx.router)

    async def run_command(argv: list[str]) -> CommandOutput:
        result = execute(argv, invoker)
        if inspect.isawaitable(result):
            result = await result
        return result

    return run_command
