"""Messages in the language of the surface: one `error:` prefix, did-you-mean for commands,
subcommands and options, hints that say `help` on the console and `edgekeeper ... --help` on
the CLI, the CLI's own commands named as such on the console, and daemon hints written for the
CLI shown the console's way."""

from __future__ import annotations

import asyncio

import pytest

from firmware.cli import commands
from firmware.cli.commands import CLI, CONSOLE, InProcessInvoker, execute, failure
from firmware.cli.result import CommandResult
from firmware.errors import Unavailable, UsageError
from tests.unit.cli.daemon_double import daemon_router


def on(surface: str, *argv: str) -> CommandResult:
    if surface == CLI:
        try:
            parser = commands.build_parser(CLI, prog="edgekeeper")
            parser.parse_line(list(argv))
        except UsageError as error:
            return failure(error, CLI)
        raise AssertionError(f"{argv} parsed on the CLI")
    return asyncio.run(execute(list(argv), InProcessInvoker(daemon_router())))


def test_a_typo_of_a_command_gets_a_did_you_mean_on_both_surfaces() -> None:
    assert on(CONSOLE, "stauts") == CommandResult(
        "error: unknown command 'stauts': did you mean `status`? (`help` lists the commands)", 2
    )
    assert on(CLI, "stauts").text == (
        "error: unknown command 'stauts': did you mean `edgekeeper status`? "
        "(`edgekeeper help` lists the commands)"
    )


def test_a_typo_of_a_subcommand_names_the_group() -> None:
    assert on(CONSOLE, "keys", "lsit").text == (
        "error: unknown command 'keys lsit': did you mean `keys list`? "
        "(`help keys` lists the commands)"
    )
    assert on(CONSOLE, "keys").text == (
        "error: keys: which one? `keys list`, `keys migrate` (`help keys` lists the commands)"
    )


def test_a_typo_of_an_option_gets_a_did_you_mean() -> None:
    result = on(CONSOLE, "logs", "web", "--tial", "5")
    assert result.exit_code == 2
    assert result.text == (
        "error: logs: unrecognized arguments: --tial 5: did you mean `--tail`? "
        "(`help logs` lists its arguments)"
    )


def test_nothing_close_gets_no_guess() -> None:
    assert on(CONSOLE, "frobnicate").text == (
        "error: unknown command 'frobnicate' (`help` lists the commands)"
    )


@pytest.mark.parametrize(
    "argv",
    [("stauts",), ("log-level", "loud"), ("log-level",), ("logs", "x", "-z"), ("keys", "x")],
)
def test_one_error_prefix_and_the_program_never_inside(argv: tuple[str, ...]) -> None:
    for surface in (CLI, CONSOLE):
        text = on(surface, *argv).text
        assert text.startswith("error: ")
        assert text.count("error:") == 1, text
        assert not text.startswith("error: edgekeeper"), text


def test_usage_hints_speak_the_surface() -> None:
    console = on(CONSOLE, "log-level", "loud").text
    assert console.endswith("(`help log-level` lists its arguments)")
    assert "--help" not in console and "edgekeeper" not in console
    cli = on(CLI, "log-level", "loud").text
    assert cli.endswith("(see `edgekeeper log-level --help`)")


def test_the_clis_own_commands_are_named_as_such_on_the_console() -> None:
    for argv in (("run",), ("console-password",), ("config", "show")):
        name = " ".join(argv)
        result = on(CONSOLE, *argv)
        assert result.exit_code == 2
        assert result.text.startswith(
            f"error: `{name}` runs on the board's shell only, not on the console"
        )
        assert f"`edgekeeper {name}` in a shell" in result.text


def test_edgekeeper_typed_on_the_console_is_shown_the_console_way() -> None:
    result = on(CONSOLE, "edgekeeper", "status")
    assert result.text == (
        "error: unknown command 'edgekeeper': on the console, type the command alone "
        "(e.g. `status`; `help` lists the commands)"
    )


def test_help_for_a_typo_gets_the_same_guess() -> None:
    assert on(CONSOLE, "help", "stauts").text.startswith(
        "error: unknown command 'stauts': did you mean `status`?"
    )


def test_daemon_hints_name_console_commands_without_the_program() -> None:
    error = Unavailable(
        "the runtime service has not started",
        hint="see `edgekeeper status`; `edgekeeper keys list`; `edgekeeper console-password`",
    )
    assert failure(error, CONSOLE).text == (
        "error: the runtime service has not started "
        "(see `status`; `keys list`; `edgekeeper console-password`)"
    )
    assert failure(error, CLI).text == f"error: {error.render()}"
