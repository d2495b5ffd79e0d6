"""The commands only the CLI front end offers, and its way to the daemon.

`logs` (streamed to stdout, `-f` follows) and `deploy` (reads a local manifest) talk to the
daemon's socket themselves; `console-password` makes the console's password hash without the
daemon; `run` starts the daemon and is supplied by the program's entry point.
The console never loads this module: it has its own `logs` and no use for local files.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping

from firmware.api.client import ApiClient
from firmware.api.model import ApiResponse
from firmware.cli.commands import CLI, LOG_LEVELS, Command, argument
from firmware.cli.console_password import make_console_password
from firmware.cli.deploy import deploy
from firmware.cli.follow import follow_logs
from firmware.cli.result import CommandResult

COMMANDS: tuple[Command, ...] = (
    Command(
        "logs",
        "a module's output (-f follows it until Ctrl-C)",
        (
            argument("name", metavar="NAME", help="the module"),
            argument("--tail", type=int, metavar="N", help="only the last N lines"),
            argument("--since", metavar="T", help="unix seconds, RFC 3339, or e.g. 10m"),
            argument("-f", "--follow", action="store_true", help="keep streaming new lines"),
            argument("-t", "--timestamps", action="store_true", help="prefix engine timestamps"),
        ),
        local=follow_logs,
        surfaces=frozenset({CLI}),
    ),
    Command(
        "deploy",
        "apply a deployment manifest (TOML or IoT Edge JSON), showing what changes",
        (
            argument("manifest", metavar="MANIFEST", help="the manifest file"),
            argument("--dry-run", action="store_true", help="show the changes, apply nothing"),
        ),
        local=deploy,
        surfaces=frozenset({CLI}),
    ),
    Command(
        "console-password",
        "make [console] password_hash: asks the password twice (or reads a line from stdin)",
        local=make_console_password,
        surfaces=frozenset({CLI}),
    ),
)


DaemonRunner = Callable[[argparse.Namespace], int]


def daemon_command(run_daemon: DaemonRunner) -> Command:
    """`run`: the daemon in the foreground. The program's entry point supplies `run_daemon`, the
    one layer above the CLI that may start the daemon."""
    return Command(
        "run",
        "run the daemon in the foreground (what the systemd unit starts)",
        (
            argument("--log-level", choices=LOG_LEVELS, help="override [logging] level"),
            argument("--log-format", choices=("text", "json"), help="override [logging] format"),
        ),
        local=lambda args: CommandResult("", run_daemon(args)),
        surfaces=frozenset({CLI}),
    )


class SocketInvoker:
    """The CLI's way to the daemon: the management socket."""

    def __init__(self, uri: str) -> None:
        self._client = ApiClient(uri)

    async def request(
        self, method: str, path: str, query: Mapping[str, str], body: object
    ) -> ApiResponse:
        return await self._client.request(method, path, query, body)
