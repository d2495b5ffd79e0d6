"""The console as a daemon service: opens `[console] device`, serves a session, shows the logs.

`prepare` reads the login settings and opens the port (so a bad `[console] password_hash` or a
missing UART stops the start with one clear line); `run` prints the banner and prompt and serves
the session until the daemon stops it, with the daemon's log lines fed to the console through the
log sink (from the console's own level, `[console] log_level`). Commands run through the
`CommandRunner` it is given: the CLI's command table executed in-process
(`command_table_runner`), so the console shows what the CLI shows, on a `Terminal` of the
session's width. Tab completes through the `Completer` it is given (`command_completer`).

With a password hash set, every session asks for a login (firmware/console/login.py). The
service keeps one `LoginLedger` for its life, so failures and a lockout outlast a session that
ends with its port (a USB adapter pulled, a `socket://` peer hanging up); the password is
checked in the executor, off the loop.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from firmware import __version__
from firmware.api.router import Router
from firmware.cli.commands import (
    Command,
    InProcessInvoker,
    execute,
)
from firmware.cli.terminal import Terminal
from firmware.config.password_hash import PasswordHash
from firmware.config.schema import Config
from firmware.console.completion import Completer, DaemonNames
from firmware.console.login import LoginDialog, LoginLedger, LoginRules
from firmware.console.port import ConsolePort, open_console_port
from firmware.console.session import (
    OWN_WORDS,
    CommandOutput,
    CommandRunner,
    ConsoleLogin,
    ConsoleSession,
)
from firmware.errors import Forbidden
from firmware.executor import BoundedExecutor, RunBlocking
from firmware.logs import get_logger

log = get_logger("console")


class LogLines(Protocol):
    """Where the console gets the daemon's log lines from (the daemon's `LogControl`)."""

    @property
    def level(self) -> str:
        """The daemon's own log level ("info")."""

    def add_level_sink(self, sink: Callable[[str, int], None]) -> Callable[[], None]:
        """Send every formatted line and its level to `sink`; returns a function that stops
        it."""


class ConsoleService:
    """The technician's console on the board's console UART (or the sim board's pty)."""

    name = "console"

    def __init__(
        self,
        config: Config,
        executor: BoundedExecutor,
        logs: LogLines,
        run_command: CommandRunner,
        completer: Completer | None = None,
    ) -> None:
        self._config = config
        self._executor = executor
        self._logs = logs
        self._run_command = run_command
        self._completer = completer
        self._port: ConsolePort | None = None
        self._session: ConsoleSession | None = None
        self._password: PasswordHash | None = None
        self._ledger: LoginLedger | None = None

    async def prepare(self) -> None:
        """Read the login settings and open the console device; `ConfigError` names a bad
        setting, `DeviceError` the device and the fix when it cannot be opened."""
        if self._port is not None:
            return
        console = self._config.console
        if console.password_hash is not None and self._ledger is None:
            self._password = PasswordHash.parse(console.password_hash)
            self._ledger = LoginLedger(LoginRules.from_config(console))
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
        login = self._login()
        logs = self._logs
        session = ConsoleSession(
            port,
            self._run_command,
            prompt=config.console.prompt,
            banner=f"edgekeeper {__version__} console on {config.hostname}; {_invitation(login)}",
            login=login,
            completer=self._completer,
            columns=config.console.columns,
            log_level=config.console.log_level,
            daemon_log_level=lambda: logs.level,
        )
        self._session = session
        remove_sink = logs.add_level_sink(session.post_log)
        try:
            await session.serve()
        finally:
            remove_sink()
            self._session = None
            port.close()

    def describe(self) -> dict[str, object]:
        """Status detail: the port, how much output was dropped for want of a reader, and
        whether someone is logged in."""
        session = self._session
        if session is None:
            return {"port": None}
        detail: dict[str, object] = {
            "port": session.port_description,
            "dropped_log_lines": session.dropped_logs,
            "columns": session.columns,
        }
        if session.login is not None:
            detail["logged_in"] = session.login.dialog.logged_in
        return detail

    def _login(self) -> ConsoleLogin | None:
        password, ledger = self._password, self._ledger
        if password is None or ledger is None:
            return None
        run_blocking = self._executor.run

        async def check_password(typed: str) -> bool:
            return await run_blocking(password.verifies, typed)

        return ConsoleLogin(LoginDialog(ledger), check_password)


def _invitation(login: ConsoleLogin | None) -> str:
    if login is None:
        return "type help"
    if login.dialog.at_shell:
        return "type help; login to change things"
    return "log in to use it"


def command_table_runner(router: Router, run_blocking: RunBlocking) -> CommandRunner:
    """The CLI's command set, executed in-process against the daemon's router on the session's
    terminal, file reads in the daemon's executor (`run_blocking`); `read_only` refuses the
    commands not marked `read_only` in the table."""
    invoker = InProcessInvoker(router, run_blocking=run_blocking)

    def only_read_only(command: Command) -> None:
        if not command.read_only:
            raise Forbidden(f"{command.name} changes the gateway: log in first", hint="login")

    async def run_command(argv: list[str], *, read_only: bool, terminal: Terminal) -> CommandOutput:
        permit = only_read_only if read_only else None
        return await execute(argv, invoker, permit=permit, terminal=terminal)

    return run_command


def command_completer(router: Router) -> Completer:
    """Completion from the console's command table, the session's own words, and the names
    the daemon lists through its router."""
    return Completer(DaemonNames(InProcessInvoker(router)), own=OWN_WORDS)
