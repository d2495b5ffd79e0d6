"""`edgekeeper`: busybox-style entry point of the one binary.

The command comes from `argv[1:]`, or from the program's own name when it is called through a
link such as `edgekeeper-status` or `edgekeeper-log-level`. Global options (`--config`, `--board`,
`--socket`) may come before or after the command. Commands that talk to the daemon go over its
management socket; `run` is the daemon itself. Every `EdgekeeperError` that reaches here is
printed once as `error: ...` on stderr: exit 2 for usage errors, 1 otherwise; Ctrl-C exits 130.

Start-up stays light: the daemon and the config loader are imported only by the commands that
need them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence

from firmware.cli import commands, frontend
from firmware.cli.connect import CONFIG_ENV, SOCKET_ENV, management_uri
from firmware.cli.terminal import stdout_terminal
from firmware.errors import EdgekeeperError, UsageError

PROGRAM = commands.PROGRAM


def main(argv: list[str] | None = None, *, run_daemon: frontend.DaemonRunner | None = None) -> int:
    """Run one command line (`argv` includes the program name, as `sys.argv` does); `run_daemon`
    makes the `run` command available (the program's entry point gives it)."""
    argv = list(sys.argv if argv is None else argv)
    table = (*commands.COMMANDS, *((frontend.daemon_command(run_daemon),) if run_daemon else ()))
    try:
        words = command_words(argv, table)
        return _run(words, table)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`edgekeeper config show | head`): say nothing more, like `cat`.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except EdgekeeperError as error:
        print(f"error: {error.render()}", file=sys.stderr)
        return 2 if isinstance(error, UsageError) else 1


def command_words(argv: list[str], table: Sequence[commands.Command]) -> list[str]:
    """The command line after busybox-style dispatch on the program name."""
    name = os.path.basename(argv[0]) if argv else PROGRAM
    rest = argv[1:]
    prefix = f"{PROGRAM}-"
    if not name.startswith(prefix):
        return rest
    applet = name[len(prefix) :]
    for command in commands.commands_for(commands.CLI, table):
        if command.name.replace(" ", "-") == applet:
            return [*command.words, *rest]
    raise UsageError(
        f"{name}: no edgekeeper command is called {applet!r}",
        hint=f"link the binary as {PROGRAM}-<command>, e.g. {PROGRAM}-status",
    )


def _global_options(suppress: bool) -> commands.CommandParser:
    """The options every command takes; `suppress` keeps a sub-command's copy from overwriting
    a value given before the command."""
    options = commands.CommandParser(add_help=False)

    def default(value: object) -> object:
        return argparse.SUPPRESS if suppress else value

    options.add_argument(
        "--config",
        metavar="FILE",
        default=default(os.environ.get(CONFIG_ENV) or None),
        help=f"config file (env {CONFIG_ENV}; default /etc/edgekeeper/config.toml)",
    )
    options.add_argument(
        "--board", metavar="NAME|FILE", default=default(None), help="board name or board file"
    )
    options.add_argument(
        "--socket",
        "--management-uri",
        dest="socket",
        metavar="URI",
        default=default(os.environ.get(SOCKET_ENV) or None),
        help="the daemon's management socket (unix:///run/edgekeeper/mgmt.sock)",
    )
    return options


def _run(words: list[str], table: Sequence[commands.Command]) -> int:
    parser = commands.build_parser(
        commands.CLI,
        prog=PROGRAM,
        parents=[_global_options(suppress=False)],
        sub_parents=[_global_options(suppress=True)],
        table=table,
    )
    try:
        args = parser.parse_line(words)
    except commands.HelpRequested as shown:
        print(shown.text)
        return 0
    command: commands.Command = args.command
    if command.local is not None:
        result = commands.run_local(command, args)
    else:
        invoker = frontend.SocketInvoker(lambda: management_uri(args))
        result = asyncio.run(commands.run(command, args, invoker, stdout_terminal()))
    if result.text:
        print(result.text, file=sys.stdout if result.exit_code == 0 else sys.stderr)
    return result.exit_code
