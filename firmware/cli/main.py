"""`edgekeeper`: busybox-style entry point of the one binary.

The command comes from `argv[1:]`, or from the program's own name when it is called through a
link such as `edgekeeper-status` or `edgekeeper-log-level`. Global options (`--config`, `--board`,
`--socket`) may come before or after the command. Commands that talk to the daemon go over its
management socket; `run` is the daemon itself. Every `EdgekeeperError` that reaches here is
printed once as `error: ...` on stderr: exit 2 for usage errors, 1 otherwise; Ctrl-C exits 130.

Start-up stays light: this module imports argparse and the command table only; the daemon, the
config loader and asyncio are imported by the commands that need them.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from firmware.cli import commands
from firmware.errors import ConfigError, EdgekeeperError, UsageError

PROGRAM = "edgekeeper"
CONFIG_ENV = "EDGEKEEPER_CONFIG"
SOCKET_ENV = "EDGEKEEPER_MANAGEMENT_URI"
# The same as firmware.config.loader's; not imported from there to keep `status` from loading
# the config machinery when there is no config file (a test holds the two equal).
DEFAULT_CONFIG_FILE = Path("/etc/edgekeeper/config.toml")


def main(argv: list[str] | None = None) -> int:
    """Run one command line (`argv` includes the program name, as `sys.argv` does)."""
    argv = list(sys.argv if argv is None else argv)
    try:
        words = command_words(argv)
        return _run(words)
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


def command_words(argv: list[str]) -> list[str]:
    """The command line after busybox-style dispatch on the program name."""
    name = os.path.basename(argv[0]) if argv else PROGRAM
    rest = argv[1:]
    prefix = f"{PROGRAM}-"
    if not name.startswith(prefix):
        return rest
    applet = name[len(prefix) :]
    for command in commands.commands_for(commands.CLI):
        if command.name.replace(" ", "-") == applet:
            return [*command.words, *rest]
    raise UsageError(
        f"{name}: no edgekeeper command is called {applet!r}",
        hint=f"link the binary as {PROGRAM}-<command>, e.g. {PROGRAM}-status",
    )


def _global_options(suppress: bool) -> argparse.ArgumentParser:
    """The options every command takes; `suppress` keeps a sub-command's copy from overwriting
    a value given before the command."""
    options = argparse.ArgumentParser(add_help=False)

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


def _run(words: list[str]) -> int:
    parser = commands.build_parser(
        commands.CLI,
        prog=PROGRAM,
        parents=[_global_options(suppress=False)],
        sub_parents=[_global_options(suppress=True)],
    )
    try:
        args = parser.parse_args(words)
    except commands.HelpRequested as shown:
        print(shown.text)
        return 0
    command: commands.Command = args.command
    if command.local is not None:
        result = commands.run_local(command, args)
    else:
        import asyncio

        invoker = commands.SocketInvoker(management_uri(args))
        result = asyncio.run(commands.run(command, args, invoker))
    if result.text:
        print(result.text, file=sys.stdout if result.exit_code == 0 else sys.stderr)
    return result.exit_code


def management_uri(args: argparse.Namespace) -> str:
    """Where the daemon listens: --socket, else the config's [connect] management_uri (from
    --config, or the default file when it exists and loads), else the built-in default."""
    from firmware.api.client import DEFAULT_MANAGEMENT_URI

    if args.socket:
        return args.socket
    explicit = args.config is not None or args.board is not None
    if not explicit and not _default_config_file().is_file():
        return DEFAULT_MANAGEMENT_URI
    from firmware.config import load_config

    try:
        return load_config(args.config, args.board).connect.management_uri
    except ConfigError:
        if explicit:
            raise
        return DEFAULT_MANAGEMENT_URI


def _default_config_file() -> Path:
    return DEFAULT_CONFIG_FILE
