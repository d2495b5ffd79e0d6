"""The command set shared by the CLI and the serial console, each command declared once.

A `Command` names itself (one or two words: "status", "keys list"), says what it does, lists its
arguments (argparse style), and either makes one API request (`ApiCall`: method, path with
`{argument}` placeholders, query and body built from the arguments) whose JSON answer its
`render` turns into text, runs an `action` (several requests, a stream or a file read, text
streamed to the terminal meanwhile: `logs`, `deploy`, `stop`, `restart`, `config validate`), or
runs `local`ly (help, version, and the CLI-only `run`, `console-password` and `config show`).
Adding a command is adding one entry to `COMMANDS`. A command that changes nothing says so
with `read_only=True`: a console that is not logged in runs only those (docs/console.md); a new
command is refused there until it is marked.

The CLI sends requests over the management socket (`firmware.cli.frontend.SocketInvoker`); the
console dispatches them in-process into the router (`InProcessInvoker`). Both show the same text,
fitted to the `Terminal` they run on. `execute(argv, invoker)` parses one command line and runs
it; errors come back as `error: ...` text with exit code 2 for usage errors and 1 otherwise,
never as exceptions, in the language of the surface: the console's hints say `help COMMAND` and
name console commands without `edgekeeper`, the CLI's say `edgekeeper COMMAND --help`; an
unknown command, subcommand or option gets a did-you-mean.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import textwrap
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, ParamSpec, Protocol, TypeVar
from urllib.parse import quote

from firmware import __version__
from firmware.api import versions
from firmware.api.errors import error_for_answer
from firmware.api.model import JSON_TYPE, ApiRequest, ApiResponse
from firmware.api.router import Router
from firmware.build_info import build_description
from firmware.cli import module_commands, render
from firmware.cli.console_password import make_console_password
from firmware.cli.result import CommandResult
from firmware.cli.terminal import DEFAULT_COLUMNS, Terminal
from firmware.cli.views.certs import render_certificates, render_renewed
from firmware.cli.views.daemon import render_log_level, render_status
from firmware.cli.views.identity import render_identities, render_identity, render_sockets
from firmware.cli.views.keys import render_keys
from firmware.cli.views.keys_migration import migration_status, render_migration
from firmware.cli.views.modules import (
    render_log_lines,
    render_module,
    render_modules,
    render_system_status,
)
from firmware.cli.views.provisioning import render_reprovisioned
from firmware.errors import EdgekeeperError, UsageError
from firmware.executor import RunBlocking

if TYPE_CHECKING:
    from _typeshed import SupportsWrite

CLI = "cli"
CONSOLE = "console"
EVERYWHERE = frozenset({CLI, CONSOLE})
LOG_LEVELS = ("debug", "info", "warning", "error")
PROGRAM = "edgekeeper"
# `run`, the daemon itself, joins the CLI's table at the program's entry point
# (firmware.cli.frontend.daemon_command); the console names it among the CLI's own commands.
RUN = "run"

T = TypeVar("T")
P = ParamSpec("P")


class Invoker(Protocol):
    """Carries a command's requests to the daemon (raising the answer's error for status >=
    400) and runs its blocking calls (file reads) off the event loop."""

    async def request(
        self, method: str, path: str, query: Mapping[str, str], body: object
    ) -> ApiResponse: ...

    def stream(
        self, method: str, path: str, query: Mapping[str, str]
    ) -> AsyncGenerator[bytes, None]:
        """The answer's body chunk by chunk as it comes (a followed log); closing the generator
        (or cancelling its reader) ends the request."""

    def run_blocking(
        self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
    ) -> Awaitable[T]: ...


@dataclass(frozen=True)
class Argument:
    """One argparse argument: its flags or name, and add_argument's keyword options."""

    flags: tuple[str, ...]
    options: Mapping[str, Any] = field(default_factory=dict)


def argument(*flags: str, **options: Any) -> Argument:
    return Argument(flags, options)


@dataclass(frozen=True)
class ApiCall:
    """The request a command makes; `{name}` in `path` is filled (percent-encoded) from args."""

    method: str
    path: str
    query: Callable[[argparse.Namespace], Mapping[str, str]] | None = None
    body: Callable[[argparse.Namespace], object] | None = None

    def build(self, args: argparse.Namespace) -> tuple[str, str, dict[str, str], object]:
        values = {name: quote(str(value), safe="") for name, value in vars(args).items()}
        path = self.path.format_map(values)
        query = dict(self.query(args)) if self.query else {}
        body = self.body(args) if self.body else None
        return self.method, path, query, body


def render_json(answer: object, args: argparse.Namespace) -> str:
    return json.dumps(answer, indent=2, sort_keys=True)


Action = Callable[[argparse.Namespace, Invoker, Terminal], Awaitable[CommandResult]]


@dataclass(frozen=True)
class Command:
    """One command of the CLI and the console."""

    name: str
    help: str
    arguments: tuple[Argument, ...] = ()
    call: ApiCall | None = None
    render: Callable[[Any, argparse.Namespace], str] = render_json
    local: Callable[[argparse.Namespace], CommandResult] | None = None
    action: Action | None = None  # requests, streams, waits; writes to the terminal meanwhile
    surfaces: frozenset[str] = EVERYWHERE
    read_only: bool = False  # changes nothing: a logged-out console may run it
    exit_status: Callable[[Any], int] | None = None  # from the answer; None: 0 for any answer

    @property
    def words(self) -> list[str]:
        return self.name.split()


def _requested(verb: str) -> Callable[[object, argparse.Namespace], str]:
    def rendered(answer: object, args: argparse.Namespace) -> str:
        return f"{args.name}: {verb} requested"

    return rendered


def _migration_request(args: argparse.Namespace) -> dict[str, object]:
    """The body of `keys migrate`: the named keys or --all, never both, never neither."""
    if bool(args.names) == args.all:
        raise UsageError(
            "keys migrate: name the keys to move, or give --all",
            hint=f"e.g. `{_prefixed(args.prog, 'keys migrate device-identity --to pkcs11')}`",
        )
    chosen: dict[str, object] = {"all": True} if args.all else {"keys": list(args.names)}
    return {**chosen, "to": args.to, "apply": args.apply}


# --- local commands ------------------------------------------------------------------------


def show_help(args: argparse.Namespace) -> CommandResult:
    surface = args.surface
    if args.topic:
        try:
            build_parser(surface, prog=args.prog, table=args.table).parse_line(
                [*args.topic, "--help"]
            )
        except HelpRequested as shown:
            return CommandResult(shown.text)
    available = commands_for(surface, args.table)
    lines = ["commands:"]
    width = max(len(command.name) for command in available)
    for command in available:
        lines.extend(_help_line(command, width, render.columns_of(args)))
    lines.append(f"`{_prefixed(args.prog, 'help COMMAND')}` tells more about one.")
    if surface == CONSOLE:
        shell_only = ", ".join(f"`{PROGRAM} {name}`" for name in _cli_only_names())
        note = f"On the board's shell only: {shell_only}."
        columns = render.columns_of(args)
        lines.extend(textwrap.wrap(note, columns) if columns > 0 else [note])
    return CommandResult("\n".join(lines))


def _help_line(command: Command, width: int, columns: int) -> list[str]:
    """`command`'s line of the list, its help wrapped under itself to fit `columns`."""
    first = f"  {command.name.ljust(width)}  "
    if columns <= 0:
        return [first + command.help]
    wrapped = textwrap.wrap(command.help, max(columns - len(first), 20))
    return [first + wrapped[0], *(" " * len(first) + rest for rest in wrapped[1:])]


def show_version(args: argparse.Namespace) -> CommandResult:
    build = build_description(interpreter_path=True)
    lines = [
        f"edgekeeper {__version__}",
        f"board: {_board_name(getattr(args, 'board', None))}",
        f"build: {build}",
        f"platform: {platform.system()} {platform.machine()}",
    ]
    return CommandResult("\n".join(lines))


def _board_name(given: str | None) -> str:
    if given:
        return given
    # Deferred: the config package loads only for commands that read configs or boards.
    from firmware.config import list_boards
    from firmware.config.boards import BOARD_ENV

    chosen = os.environ.get(BOARD_ENV)
    if chosen:
        return chosen
    compiled = [board.name for board in list_boards() if board.compiled]
    return compiled[0] if compiled else "none compiled in (running from source)"


async def validate_config(
    args: argparse.Namespace, invoker: Invoker, terminal: Terminal
) -> CommandResult:
    """`config validate [FILE]`: on the CLI FILE or --config with --board; on the console FILE
    (an absolute path) or the file the daemon runs with, and the daemon's board. The files are
    read off the event loop."""
    # Deferred: the config loader and validator load only for `config` commands.
    from firmware.config.report import validate_report

    if args.surface == CONSOLE:
        status = (await invoker.request("GET", "/daemon/status", {}, None)).json()
        known = status if isinstance(status, dict) else {}
        if args.file is not None and not Path(args.file).is_absolute():
            raise UsageError(
                f"config validate: {args.file!r} is not an absolute path",
                hint="the console has no working directory: give the whole path",
            )
        chosen, board = args.file or known.get("config_file"), known.get("board")
    else:
        chosen, board = args.file or args.config, args.board
    ok, text = await invoker.run_blocking(validate_report, Path(chosen) if chosen else None, board)
    return CommandResult(text, 0 if ok else 1)


def show_config(args: argparse.Namespace) -> CommandResult:
    # Deferred: the config loader loads only for `config` commands.
    from firmware.config import load_config
    from firmware.config.report import show_effective

    config = load_config(Path(args.config) if args.config else None, args.board)
    text = show_effective(config, args.format, sources=args.sources)
    return CommandResult(text.rstrip("\n"))


# --- the command table ----------------------------------------------------------------------

COMMANDS: tuple[Command, ...] = (
    Command(
        "help",
        "list the commands, or explain one",
        (argument("topic", nargs="*", metavar="COMMAND", help="the command to explain"),),
        local=show_help,
        read_only=True,
    ),
    Command(
        "version", "version, board and build of edgekeeper", local=show_version, read_only=True
    ),
    Command(
        "status",
        "the daemon's state, uptime, memory and services",
        call=ApiCall("GET", "/daemon/status"),
        render=render_status,
        read_only=True,
    ),
    Command(
        "log-level",
        "change the daemon's log level while it runs",
        (argument("level", choices=LOG_LEVELS, help="the lowest level logged"),),
        call=ApiCall("PUT", "/daemon/log-level", body=lambda args: {"level": args.level}),
        render=render_log_level,
    ),
    Command(
        "keys list",
        "the keys of every key backend, and backends that cannot be reached",
        call=ApiCall("GET", "/keys"),
        render=render_keys,
        read_only=True,
    ),
    Command(
        "keys migrate",
        "move keys to another backend: shows the plan, --apply carries it out",
        (
            argument("names", nargs="*", metavar="NAME", help="the keys to move"),
            argument("--all", action="store_true", help="every key not in the target yet"),
            argument("--to", required=True, metavar="BACKEND", help="file, pkcs11 or tpm"),
            argument("--apply", action="store_true", help="move them (default: show the plan)"),
        ),
        call=ApiCall("POST", "/keys/migrate", body=_migration_request),
        render=render_migration,
        exit_status=migration_status,
    ),
    Command(
        "certs list",
        "managed certificates: subject, issuer, not-after, days left, key backend",
        call=ApiCall("GET", "/certificates"),
        render=render_certificates,
        read_only=True,
    ),
    Command(
        "certs renew",
        "renew a managed certificate now (and the certificates it issued)",
        (argument("name", metavar="NAME", help="e.g. edge-ca or workload-ca"),),
        call=ApiCall("POST", "/certificates/{name}/renew"),
        render=render_renewed,
    ),
    Command(
        "identity list",
        "module identities: module, generation id, managed by",
        call=ApiCall("GET", "/identities"),
        render=render_identities,
        read_only=True,
    ),
    Command(
        "identity show",
        "one module identity",
        (argument("name", metavar="NAME", help="the module id"),),
        call=ApiCall("GET", "/identities/{name}"),
        render=render_identity,
        read_only=True,
    ),
    Command(
        "identity sockets",
        "the workload socket of each module: state, connections, path",
        call=ApiCall("GET", "/workload/sockets"),
        render=render_sockets,
        read_only=True,
    ),
    Command(
        "list",
        "the modules: name, status, uptime, image, detail (cut to fit: `show NAME` has it all)",
        call=ApiCall("GET", "/modules"),
        render=render_modules,
        read_only=True,
    ),
    Command(
        "show",
        "one module: status, image, restarts, exit status and the whole detail",
        (argument("name", metavar="NAME", help="the module"),),
        call=ApiCall("GET", "/modules/{name}"),
        render=render_module,
        read_only=True,
    ),
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
        action=module_commands.show_logs,
        read_only=True,
    ),
    Command(
        "start",
        "start a module",
        (argument("name", metavar="NAME", help="the module"),),
        call=ApiCall("POST", "/modules/{name}/start"),
        render=_requested("start"),
    ),
    Command(
        "stop",
        "stop a module and wait until it has stopped (Ctrl-C stops the wait)",
        (argument("name", metavar="NAME", help="the module"),),
        action=module_commands.stop_module,
    ),
    Command(
        "restart",
        "restart a module and wait until it has (Ctrl-C stops the wait)",
        (argument("name", metavar="NAME", help="the module"),),
        action=module_commands.restart_module,
    ),
    Command(
        "deploy",
        "apply a deployment manifest (TOML or IoT Edge JSON), showing what changes",
        (
            argument("manifest", metavar="MANIFEST", help="the manifest file"),
            argument("--dry-run", action="store_true", help="show the changes, apply nothing"),
        ),
        action=module_commands.deploy,
    ),
    Command(
        "system status",
        "container engine, modules summary and why the daemon is degraded",
        call=ApiCall("GET", "/system/status"),
        render=render_system_status,
        read_only=True,
    ),
    Command(
        "system reprovision",
        "provision the device again (DPS, or the manual settings) and keep the old identity if "
        "that fails",
        call=ApiCall("POST", "/device/reprovision"),
        render=render_reprovisioned,
    ),
    Command(
        "system logs",
        "the daemon's recent log lines",
        (argument("--lines", type=int, default=100, metavar="N", help="how many (default 100)"),),
        call=ApiCall("GET", "/system/logs", query=lambda args: {"lines": str(args.lines)}),
        render=render_log_lines,
        read_only=True,
    ),
    Command(
        "config validate",
        "check a config file (and its config.d) and list every problem",
        (argument("file", nargs="?", metavar="FILE", help="the config file (default: in use)"),),
        action=validate_config,
        read_only=True,
    ),
    # On the board's shell only: it reads the config files itself, which the shell protects by
    # their permissions, where a console shows them to whoever holds the UART.
    Command(
        "config show",
        "the effective configuration, secrets redacted",
        (
            argument("--format", choices=("toml", "json"), default="toml", help="output format"),
            argument("--sources", action="store_true", help="the file and line of each value"),
        ),
        local=show_config,
        surfaces=frozenset({CLI}),
        read_only=True,
    ),
    # On the board's shell only: it prints a line for config.toml, which the console cannot
    # edit, and the console would echo the password typed as an argument.
    Command(
        "console-password",
        "make [console] password_hash: asks the password twice (or reads a line from stdin)",
        local=make_console_password,
        surfaces=frozenset({CLI}),
    ),
)


def commands_for(surface: str, table: Iterable[Command] | None = None) -> list[Command]:
    """The commands offered on `surface` (CLI or CONSOLE), from `COMMANDS` unless given."""
    return [command for command in (table or COMMANDS) if surface in command.surfaces]


def _cli_only_names() -> list[str]:
    """The commands the CLI offers and the console does not, `run` first."""
    return [RUN, *(command.name for command in COMMANDS if CONSOLE not in command.surfaces)]


# --- parsing -------------------------------------------------------------------------------


class HelpRequested(Exception):
    """`--help` was asked for: `text` is the help to show (never printed by argparse itself)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


@dataclass(frozen=True)
class Wording:
    """How a surface names its commands in messages: `prog` before each ("" on the console)."""

    surface: str
    prog: str

    def command(self, words: str) -> str:
        """`words` as typed on this surface: "help" or "edgekeeper help"."""
        return _prefixed(self.prog, words)

    def help_hint(self, name: str) -> str:
        """Where to read about command `name` ("" for the whole list)."""
        if self.surface == CONSOLE:
            return f"`{_prefixed('help', name)}` lists " + ("its arguments" if name else "them")
        return f"see `{_prefixed(self.prog, _prefixed(name, '--help'))}`"


class CommandParser(argparse.ArgumentParser):
    """An argparse parser that raises instead of printing and exiting (the console has no
    stdout of its own, and the CLI prints errors in one place). `words` are the command words
    it parses after (none for the top parser); errors name the command, never the program."""

    def __init__(
        self,
        *args: Any,
        wording: Wording | None = None,
        words: tuple[str, ...] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.wording = wording or Wording(CLI, PROGRAM)
        self.words = words

    def parse_line(self, argv: Sequence[str]) -> argparse.Namespace:
        """`argv` parsed; `UsageError` for anything the command does not take."""
        args, extras = self.parse_known_args(list(argv))
        if extras:
            command: Command | None = getattr(args, "command", None)
            raise _unrecognized(extras, command, self.wording)
        return args

    def error(self, message: str) -> NoReturn:
        name = " ".join(self.words)
        choices = self._command_choices()
        unknown = _INVALID_CHOICE.match(message)
        if unknown and choices:
            raise _unknown_command(self.words, unknown.group(1), choices, self.wording)
        if choices and message.endswith("required: COMMAND"):
            shown = ", ".join(f"`{self.wording.command(f'{name} {c}')}`" for c in choices)
            raise UsageError(
                f"{name}: which one? {shown}" if name else "no command given",
                hint=_list_hint(self.words, self.wording),
            )
        raise UsageError(
            f"{name}: {message}" if name else message, hint=self.wording.help_hint(name)
        )

    def print_help(self, file: SupportsWrite[str] | None = None) -> None:
        raise HelpRequested(self.format_help().rstrip("\n"))

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        raise UsageError(message.strip() if message else f"{self.prog}: cannot parse the line")

    def _command_choices(self) -> list[str]:
        """The command words this parser takes next (none for a command's own parser)."""
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                return list(action.choices)
        return []


_INVALID_CHOICE = re.compile(r"argument COMMAND: invalid choice: '(.*?)'")


def _unknown_command(
    words: tuple[str, ...], typed: str, choices: list[str], wording: Wording
) -> UsageError:
    """An unknown command word after `words`: the CLI-only ones are named as such, a close
    one is offered, and `edgekeeper` typed on the console is shown the console's way."""
    typed_name = " ".join((*words, typed))
    console = wording.surface == CONSOLE
    if console and typed_name in _cli_only_names():
        return UsageError(
            f"`{typed_name}` runs on the board's shell only, not on the console",
            hint=f"`{PROGRAM} {typed_name}` in a shell; `help` lists the console's commands",
        )
    if console and not words and typed == PROGRAM:
        return UsageError(
            f"unknown command {typed!r}: on the console, type the command alone",
            hint="e.g. `status`; `help` lists the commands",
        )
    message = f"unknown command {typed_name!r}"
    close = _closest(typed, choices)
    if close is not None:
        message += f": did you mean `{wording.command(' '.join((*words, close)))}`?"
    return UsageError(message, hint=_list_hint(words, wording))


def _list_hint(words: tuple[str, ...], wording: Wording) -> str:
    listing = wording.command(_prefixed("help", " ".join(words)))
    return f"`{listing}` lists the commands"


def _unrecognized(extras: list[str], command: Command | None, wording: Wording) -> UsageError:
    """Words after a command that it does not take; a close option is offered."""
    name = command.name if command is not None else ""
    message = f"unrecognized arguments: {' '.join(extras)}"
    options = [flag for item in (command.arguments if command else ()) for flag in item.flags]
    typed = next((extra for extra in extras if extra.startswith("-")), None)
    close = _closest(typed, [flag for flag in options if flag.startswith("-")]) if typed else None
    if close is not None:
        message += f": did you mean `{close}`?"
    return UsageError(f"{name}: {message}" if name else message, hint=wording.help_hint(name))


def _closest(typed: str, choices: Sequence[str]) -> str | None:
    """The choice most like `typed`, if one is close enough to be a typo of it."""
    # Deferred: difflib loads only when a line has a typo in it.
    import difflib

    found = difflib.get_close_matches(typed, choices, n=1, cutoff=0.6)
    return found[0] if found else None


def _prefixed(prog: str, words: str) -> str:
    return " ".join(part for part in (prog, words) if part)


def build_parser(
    surface: str,
    *,
    prog: str = "",
    parents: Sequence[CommandParser] = (),
    sub_parents: Sequence[CommandParser] = (),
    table: Iterable[Command] | None = None,
) -> CommandParser:
    """The parser for `surface`'s commands; `parents` add global options (the CLI's)."""
    wording = Wording(surface, prog)
    top = CommandParser(prog=prog or PROGRAM, parents=list(parents), wording=wording)
    offered = commands_for(surface, table)
    top.set_defaults(surface=surface, prog=prog, table=tuple(offered))
    words = top.add_subparsers(dest="command_word", metavar="COMMAND", parser_class=CommandParser)
    words.required = True
    groups: dict[str, argparse._SubParsersAction[CommandParser]] = {}
    singles: set[str] = set()
    for command in offered:
        first, *rest = command.words
        if not rest:
            if first in groups:
                raise ValueError(f"command {first!r} is also a group of commands")
            action = words
            singles.add(first)
        else:
            if first in singles:
                raise ValueError(f"command {first!r} is also a group of commands")
            if first not in groups:
                group = words.add_parser(
                    first,
                    help=f"{first} commands",
                    prog=_prefixed(prog, first),
                    parents=list(sub_parents),
                    wording=wording,
                    words=(first,),
                )
                groups[first] = group.add_subparsers(
                    dest="group_word", metavar="COMMAND", parser_class=CommandParser
                )
                groups[first].required = True
            action = groups[first]
        parser = action.add_parser(
            command.words[-1],
            help=command.help,
            description=command.help,
            prog=_prefixed(prog, command.name),
            parents=list(sub_parents),
            wording=wording,
            words=tuple(command.words),
        )
        for item in command.arguments:
            parser.add_argument(*item.flags, **item.options)
        parser.set_defaults(command=command)
    return top


# --- running -------------------------------------------------------------------------------


def run_local(command: Command, args: argparse.Namespace) -> CommandResult:
    """Run a local command; its errors become `error: ...` text."""
    assert command.local is not None
    try:
        return command.local(args)
    except EdgekeeperError as error:
        return failure(error, args.surface)


async def run(
    command: Command, args: argparse.Namespace, invoker: Invoker, terminal: Terminal
) -> CommandResult:
    """Run a parsed command line: locally, as an action, or by its API request through
    `invoker`; tables fit `terminal.columns`."""
    args.columns = terminal.columns
    if command.local is not None:
        return run_local(command, args)
    try:
        if command.action is not None:
            return await command.action(args, invoker, terminal)
        assert command.call is not None
        method, path, query, body = command.call.build(args)
        answer = await invoker.request(method, path, query, body)
        document = answer.json()
        status = command.exit_status(document) if command.exit_status is not None else 0
        return CommandResult(command.render(document, args), status)
    except EdgekeeperError as error:
        return failure(error, args.surface)


def failure(error: EdgekeeperError, surface: str = CLI) -> CommandResult:
    """`error: ...` for `error`, in the surface's language, with its exit code."""
    text = error.render()
    if surface == CONSOLE:
        text = _SHELL_COMMAND.sub(_as_console_command, text)
    return CommandResult(f"error: {text}", 2 if isinstance(error, UsageError) else 1)


_SHELL_COMMAND = re.compile(rf"`{PROGRAM} ([^`]+)`")


def _as_console_command(found: re.Match[str]) -> str:
    """`edgekeeper status` in a hint (the daemon writes for the CLI) as the console says it,
    when the console has that command."""
    typed = found.group(1)
    offered = (command.name for command in commands_for(CONSOLE))
    if any(typed == name or typed.startswith(f"{name} ") for name in offered):
        return f"`{typed}`"
    return found.group(0)


async def execute(
    argv: list[str],
    invoker: Invoker,
    *,
    surface: str = CONSOLE,
    permit: Callable[[Command], None] | None = None,
    terminal: Terminal | None = None,
) -> CommandResult:
    """Parse and run one command line (the console's words, without a program name); `permit`
    may refuse the parsed command (raise an `EdgekeeperError`) before it runs; `terminal` is
    where it runs (its width, and where streamed text goes). Without one: 80 columns, and what
    would have streamed comes first in the result's text."""
    try:
        args = build_parser(surface).parse_line(argv)
    except HelpRequested as shown:
        return CommandResult(shown.text)
    except UsageError as error:
        return failure(error, surface)
    if permit is not None:
        permit(args.command)
    if terminal is not None:
        return await run(args.command, args, invoker, terminal)
    streamed: list[str] = []
    result = await run(args.command, args, invoker, Terminal(DEFAULT_COLUMNS, streamed.append))
    text = "".join(streamed) + result.text
    return CommandResult(text.removesuffix("\n") if not result.text else text, result.exit_code)


# --- invokers ------------------------------------------------------------------------------


class InProcessInvoker:
    """The console's way to the daemon: straight into the router, as listener "console";
    blocking calls go to `run_blocking` (the daemon's bounded executor; default: a thread)."""

    def __init__(self, router: Router, run_blocking: RunBlocking = asyncio.to_thread) -> None:
        self._router = router
        self.run_blocking = run_blocking

    async def request(
        self, method: str, path: str, query: Mapping[str, str], body: object
    ) -> ApiResponse:
        payload = b"" if body is None else json.dumps(body).encode()
        request = ApiRequest(
            method=method,
            path=path,
            query={"api-version": versions.LATEST, **query},
            headers={"content-type": JSON_TYPE} if payload else {},
            body=payload,
            listener="console",
        )
        answer = await self._router.dispatch(request)
        if answer.status >= 400:
            if answer.stream is not None and isinstance(answer.stream, AsyncGenerator):
                await answer.stream.aclose()
            try:
                document = answer.json()
            except ValueError:
                document = None
            raise error_for_answer(answer.status, document)
        return answer

    async def stream(
        self, method: str, path: str, query: Mapping[str, str]
    ) -> AsyncGenerator[bytes, None]:
        answer = await self.request(method, path, query, None)
        chunks = answer.stream
        if chunks is None:
            body = answer.encoded_body()
            if body:
                yield body
            return
        try:
            async for chunk in chunks:
                yield chunk
        finally:
            # The handler's generator holds the engine's log stream: close it now, also when
            # the reader was cancelled (Ctrl-C on the console), not when it is collected.
            if isinstance(chunks, AsyncGenerator):
                await chunks.aclose()
