"""The command set shared by the CLI and the serial console, each command declared once.

A `Command` names itself (one or two words: "status", "keys list"), says what it does, lists its
arguments (argparse style), and either makes one API request (`ApiCall`: method, path with
`{argument}` placeholders, query and body built from the arguments) whose JSON answer its
`render` turns into text, or runs `local`ly (help, version, and the CLI-only run, logs -f,
deploy and config).
Adding a command is adding one entry to `COMMANDS`. A command that changes nothing says so
with `read_only=True`: a console that is not logged in runs only those (docs/console.md); a new
command is refused there until it is marked.

The CLI sends the request over the management socket (`firmware.cli.frontend.SocketInvoker`) and
adds the commands only it offers (`logs -f`, `deploy`, `run`); the console dispatches requests
in-process into the router (`InProcessInvoker`). Both show the same text. `execute(argv, invoker)`
parses one command line and runs it; errors come back as `error: ...` text with exit code 2 for
usage errors and 1 otherwise, never as exceptions.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, Protocol
from urllib.parse import quote

from firmware import __version__
from firmware.api import versions
from firmware.api.errors import error_for_answer
from firmware.api.model import JSON_TYPE, ApiRequest, ApiResponse
from firmware.api.router import Router
from firmware.build_info import build_description
from firmware.cli.result import CommandResult
from firmware.cli.terminal import Terminal
from firmware.cli.views.certs import render_certificates, render_renewed
from firmware.cli.views.daemon import render_log_level, render_status
from firmware.cli.views.identity import render_identities, render_identity, render_sockets
from firmware.cli.views.keys import render_keys
from firmware.cli.views.keys_migration import migration_status, render_migration
from firmware.cli.views.modules import render_log_lines, render_modules, render_system_status
from firmware.cli.views.provisioning import render_reprovisioned
from firmware.errors import EdgekeeperError, UsageError

if TYPE_CHECKING:
    from _typeshed import SupportsWrite

CLI = "cli"
CONSOLE = "console"
EVERYWHERE = frozenset({CLI, CONSOLE})
LOG_LEVELS = ("debug", "info", "warning", "error")


class Invoker(Protocol):
    """Carries a command's request to the daemon; raises the answer's error for status >= 400."""

    async def request(
        self, method: str, path: str, query: Mapping[str, str], body: object
    ) -> ApiResponse: ...


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


@dataclass(frozen=True)
class Command:
    """One command of the CLI and the console."""

    name: str
    help: str
    arguments: tuple[Argument, ...] = ()
    call: ApiCall | None = None
    render: Callable[[Any, argparse.Namespace], str] = render_json
    local: Callable[[argparse.Namespace], CommandResult] | None = None
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
            hint="e.g. `keys migrate device-identity --to pkcs11`",
        )
    chosen: dict[str, object] = {"all": True} if args.all else {"keys": list(args.names)}
    return {**chosen, "to": args.to, "apply": args.apply}


# --- local commands ------------------------------------------------------------------------


def show_help(args: argparse.Namespace) -> CommandResult:
    surface = args.surface
    if args.topic:
        try:
            build_parser(surface, prog=args.prog, table=args.table).parse_args(
                [*args.topic, "--help"]
            )
        except HelpRequested as shown:
            return CommandResult(shown.text)
    available = commands_for(surface, args.table)
    lines = ["commands:"]
    width = max(len(command.name) for command in available)
    lines.extend(f"  {command.name.ljust(width)}  {command.help}" for command in available)
    lines.append(f"`{_prefixed(args.prog, 'help COMMAND')}` tells more about one.")
    return CommandResult("\n".join(lines))


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


def validate_config(args: argparse.Namespace) -> CommandResult:
    # Deferred: the config loader and validator load only for `config` commands.
    from firmware.config.report import validate_report

    chosen = args.file or args.config
    ok, text = validate_report(Path(chosen) if chosen else None, args.board)
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
        "the modules: name, status, uptime, image",
        call=ApiCall("GET", "/modules"),
        render=render_modules,
        read_only=True,
    ),
    Command(
        "logs",
        "the last lines a module wrote",
        (
            argument("name", metavar="NAME", help="the module"),
            argument("--tail", type=int, default=50, metavar="N", help="lines (default 50)"),
        ),
        call=ApiCall(
            "GET",
            "/modules/{name}/logs",
            query=lambda args: {"tail": str(args.tail), "format": "json"},
        ),
        render=render_log_lines,
        surfaces=frozenset({CONSOLE}),
        read_only=True,
    ),
    *(
        Command(
            verb,
            f"{verb} a module",
            (argument("name", metavar="NAME", help="the module"),),
            call=ApiCall("POST", f"/modules/{{name}}/{verb}"),
            render=_requested(verb),
        )
        for verb in ("start", "stop", "restart")
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
        (argument("file", nargs="?", metavar="FILE", help="the config file (default: --config)"),),
        local=validate_config,
        surfaces=frozenset({CLI}),
        read_only=True,
    ),
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
)


def commands_for(surface: str, table: Iterable[Command] | None = None) -> list[Command]:
    """The commands offered on `surface` (CLI or CONSOLE), from `COMMANDS` unless given."""
    return [command for command in (table or COMMANDS) if surface in command.surfaces]


# --- parsing -------------------------------------------------------------------------------


class HelpRequested(Exception):
    """`--help` was asked for: `text` is the help to show (never printed by argparse itself)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


_UNKNOWN_COMMAND = re.compile(r"argument COMMAND: invalid choice: '(.*?)'")


class CommandParser(argparse.ArgumentParser):
    """An argparse parser that raises instead of printing and exiting (the console has no
    stdout of its own, and the CLI prints errors in one place)."""

    def __init__(self, *args: Any, root: str = "", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.root = root

    def error(self, message: str) -> NoReturn:
        unknown = _UNKNOWN_COMMAND.match(message)
        if unknown:
            raise UsageError(
                f"{self.prog}: unknown command {unknown.group(1)!r}",
                hint=f"`{_prefixed(self.root, 'help')}` lists the commands",
            )
        raise UsageError(f"{self.prog}: {message}", hint=f"see `{self.prog} --help`")

    def print_help(self, file: SupportsWrite[str] | None = None) -> None:
        raise HelpRequested(self.format_help().rstrip("\n"))

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        raise UsageError(message.strip() if message else f"{self.prog}: cannot parse the line")


def _prefixed(prog: str, words: str) -> str:
    return f"{prog} {words}" if prog else words


def build_parser(
    surface: str,
    *,
    prog: str = "",
    parents: Sequence[CommandParser] = (),
    sub_parents: Sequence[CommandParser] = (),
    table: Iterable[Command] | None = None,
) -> CommandParser:
    """The parser for `surface`'s commands; `parents` add global options (the CLI's)."""
    top = CommandParser(prog=prog or "edgekeeper", parents=list(parents), root=prog)
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
                    root=prog,
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
            root=prog,
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
        return failure(error)


async def run(command: Command, args: argparse.Namespace, invoker: Invoker) -> CommandResult:
    """Run a parsed command line: locally, or by its API request through `invoker`."""
    if command.local is not None:
        return run_local(command, args)
    assert command.call is not None
    try:
        method, path, query, body = command.call.build(args)
        answer = await invoker.request(method, path, query, body)
        document = answer.json()
        status = command.exit_status(document) if command.exit_status is not None else 0
        return CommandResult(command.render(document, args), status)
    except EdgekeeperError as error:
        return failure(error)


def failure(error: EdgekeeperError) -> CommandResult:
    return CommandResult(f"error: {error.render()}", 2 if isinstance(error, UsageError) else 1)


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
    where it runs (its width, and where streamed text goes), None: 80 columns, nothing streamed."""
    try:
        args = build_parser(surface).parse_args(argv)
    except HelpRequested as shown:
        return CommandResult(shown.text)
    except UsageError as error:
        return failure(error)
    if permit is not None:
        permit(args.command)
    return await run(args.command, args, invoker)


# --- invokers ------------------------------------------------------------------------------


class InProcessInvoker:
    """The console's way to the daemon: straight into the router, as listener "console"."""

    def __init__(self, router: Router) -> None:
        self._router = router

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
            try:
                document = answer.json()
            except ValueError:
                document = None
            raise error_for_answer(answer.status, document)
        return answer
