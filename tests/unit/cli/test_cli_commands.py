"""The shared command table run in-process (as the console does) and over a socket (as the CLI
does): same text both ways, errors as text with exit codes, one-entry extension."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from firmware.api.model import ApiRequest, ApiResponse
from firmware.api.router import Router
from firmware.cli import commands, render
from firmware.cli.commands import (
    CONSOLE,
    ApiCall,
    Command,
    InProcessInvoker,
    execute,
)
from firmware.cli.frontend import SocketInvoker
from firmware.cli.result import CommandResult
from tests.unit.cli.daemon_double import ThreadedDaemon, daemon_router


def console(argv: list[str], router=None) -> CommandResult:
    invoker = InProcessInvoker(router or daemon_router())
    return asyncio.run(execute(argv, invoker))


def test_status_text_is_the_same_in_process_and_over_the_socket(tmp_path: Path) -> None:
    in_process = console(["status"])
    with ThreadedDaemon(tmp_path, daemon_router()) as daemon:
        over_socket = asyncio.run(execute(["status"], SocketInvoker(daemon.uri)))
    assert in_process == over_socket
    assert in_process.exit_code == 0
    assert "console  failed   5         no such device" in in_process.text


def test_log_level_reaches_the_route_as_json() -> None:
    levels: list[str] = []
    result = console(["log-level", "warning"], daemon_router(levels))
    assert result == CommandResult("log level: warning", 0)
    assert levels == ["warning"]


def test_console_requests_arrive_on_the_console_listener() -> None:
    seen: list[ApiRequest] = []
    router = daemon_router()

    async def spy(request: ApiRequest) -> ApiResponse:
        seen.append(request)
        return ApiResponse(body={"level": "info"})

    router.add("PUT", "/spy", spy)
    table = (Command("spy", "x", call=ApiCall("PUT", "/spy", body=lambda a: {"a": 1})),)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(commands, "COMMANDS", table)
        assert console(["spy"], router).exit_code == 0
    (request,) = seen
    assert request.listener == "console"
    assert request.json() == {"a": 1}
    assert request.query["api-version"] == "2022-08-03"


def test_errors_become_text_with_exit_codes() -> None:
    unknown = console(["frobnicate"])
    assert unknown.exit_code == 2
    assert unknown.text == "error: unknown command 'frobnicate' (`help` lists the commands)"
    bad_arg = console(["log-level", "loud"])
    assert bad_arg.exit_code == 2
    assert bad_arg.text.startswith("error: log-level: argument level: invalid choice: 'loud'")
    no_route = console(["status"], router=Router())
    assert no_route == CommandResult("error: no such path: /daemon/status", 1)


def test_console_offers_the_shared_commands_only() -> None:
    names = [command.name for command in commands.commands_for(CONSOLE)]
    assert names[:4] == ["help", "version", "status", "log-level"]
    assert {"keys list", "certs list", "certs renew"} <= set(names[4:])
    assert console(["run"]).exit_code == 2
    listing = console(["help"]).text
    assert re.search(r"^  status +the daemon's state", listing, re.MULTILINE)
    assert "run" not in listing.split()
    assert " ".join(listing.split()).endswith(
        "`help COMMAND` tells more about one. "
        "On the board's shell only: `edgekeeper run`, `edgekeeper config show`, "
        "`edgekeeper console-password`."
    )
    assert max(len(line) for line in listing.splitlines()) <= 80  # wrapped to the terminal


def test_help_for_one_command_never_prints() -> None:
    shown = console(["help", "log-level"])
    assert shown.exit_code == 0
    assert shown.text.startswith("usage: log-level [-h] {debug,info,warning,error}")
    assert console(["log-level", "--help"]) == shown
    assert console(["help", "nothing"]).exit_code == 2


def test_version_is_local() -> None:
    result = console(["version"])
    assert result.exit_code == 0
    assert result.text.startswith("edgekeeper ")


def test_a_two_word_command_is_one_entry_with_path_parameters() -> None:
    router = daemon_router()

    async def restart(request: ApiRequest, name: str) -> ApiResponse:
        return ApiResponse(body={"restarted": name, "tail": request.query.get("tail")})

    router.add("POST", "/modules/{name}/restart", restart)
    entry = Command(
        "modules restart",
        "restart a module",
        (commands.argument("name"), commands.argument("--tail", default="10")),
        call=ApiCall("POST", "/modules/{name}/restart", query=lambda a: {"tail": a.tail}),
        render=lambda answer, args: f"restarted {answer['restarted']} ({answer['tail']})",
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(commands, "COMMANDS", (*commands.COMMANDS, entry))
        result = console(["modules", "restart", "a/b c", "--tail", "5"], router)
        listing = console(["help"], router).text
    assert result == CommandResult("restarted a/b c (5)", 0)
    assert re.search(r"^  modules restart +restart a module$", listing, re.MULTILINE)


def test_a_word_cannot_be_both_a_command_and_a_group() -> None:
    table = (Command("keys", "x", local=lambda a: None), Command("keys list", "y"))
    with pytest.raises(ValueError, match="also a group"):
        commands.build_parser(CONSOLE, table=table)


def test_table_aligns_columns_and_fills_empty_cells() -> None:
    text = render.table(
        ("NAME", "STATE", "NOTE"), [("a", "running", None), ("long-name", "", "x\ny")]
    )
    assert text.splitlines() == [
        "NAME       STATE    NOTE",
        "a          running  -",
        "long-name  -        x y",
    ]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (59.9, "59s"), (61, "1m 01s"), (3725, "1h 02m"), (90061, "1d 1h")],
)
def test_duration(seconds: float, text: str) -> None:
    assert render.duration(seconds) == text


def test_kib() -> None:
    assert render.kib(512) == "512 KiB"
    assert render.kib(32150) == "31.4 MiB"
    assert render.kib(3 * 1024 * 1024) == "3.0 GiB"
    assert render.kib(None) == "-"


def test_table_fits_the_width_narrowing_the_last_column_then_the_widest() -> None:
    rows = [("web", "edgekeeper/" + "i" * 60, "d" * 100), ("db", "short", None)]
    lines = render.table(("NAME", "IMAGE", "DETAIL"), rows, columns=40).splitlines()
    assert all(len(line) <= 40 for line in lines), lines
    assert lines[1] == "web   edgekeeper/iiiiiiiiiiii…  ddddddd…"
    assert lines[2] == "db    short                     -"
    assert render.table(("NAME", "IMAGE", "DETAIL"), rows).splitlines()[1].endswith("d" * 100)
    assert render.fit("abcdef", 4) == "abc…"
    assert render.fit("abcdef", 0) == "abcdef"
