"""The console as a daemon service: opens `[console] device`, serves a session, shows the logs.

`prepare` opens the port (so a missing UART stops the start with one clear line); `run` prints
the banner and prompt and serves the session until the daemon stops it, with the daemon's log
lines fed to the console through the log sink. Commands run through the `CommandRunner` it is
given: the CLI's command table executed in-process (`command_table_runner`), so the console
shows what the CLI shows.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from firmware import __version__
from firmware.api.router import Router
from firmware.cli.commands import InProcessInvoker, execute
from firmware.config.schema import Config
from firmware.console.port import ConsolePort, open_console_port
from firmware.console.session import CommandOutput, CommandRunner, ConsoleSession
from firmware.executor import BoundedExecutor
from firmware.logs import get_logger

log = get_logger("console")


class LogLines(Protocol):
    """Where the console gets the daemon's log lines from (the daemon's `LogControl`)."""

    def add_sink(self, sink: Callable[[str], None]) -> Callable[[], None]:
        """Send every formatted line to `sink`; returns a function that stops it."""


class ConsoleService:
    """The technician's console on the board's console UART (or the sim board's pty)."""

    name = "console"

    def __init__(
        self,
        config: Config,
        executor: BoundedExecutor,
        logs: LogLines,
        run_command: CommandRunner,
    ) -> None:
        self._config = config
        self._executor = executor
        self._logs = logs
        self._run_command = run_command
        self._port: ConsolePort | None = None
        self._session: ConsoleSession | None = None

    async def prepare(self) -> None:
        """Open the console device; `DeviceError` names it and the fix when it cannot be."""
        if self._port is not None:
            return
        console = self._config.console
        self._port = await open_console_port(
            console.device, console.baud, Path(self._config.paths.run_dir), self._executor.run
        )

    async def run(self) -> None:
        """Serve the console until cancelled; raises `DeviceError` if the port dies."""
        await self.prepare()
        port, self._port = self._port, None
        if port is None:
            log.info("console disabled ([console] device is none)")
            return
        config = self._config
        session = ConsoleSession(
            port,
            self._run_command,
            prompt=config.console.prompt,
            banner=f"edgekeeper {__version__} console on {config.hostname}; type help",
        )
        self._session = session
        remove_sink = self._logs.add_sink(session.post_log)
        try:
            await session.serve()
        finally:
            remove_sink()
            self._session = None
            port.close()

    def describe(self) -> dict[str, object]:
        """Status detail: the port and how much output was dropped for want of a reader."""
        session = self._session
        if session is None:
            return {"port": None}
        return {
            "port": session.port_description,
            "dropped_log_lines": session.dropped_logs,
        }


def command_table_runner(router: Router) -> CommandRunner:
    """The CLI's command set, executed in-process against the daemon's router."""
    invoker = InProcessInvoker(router)

    async def run_command(argv: list[str]) -> CommandOutput:
        return await execute(argv, invoker)

    return run_command
