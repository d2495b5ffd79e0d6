"""The console session over a real pty pair: prompt, commands, editing, Ctrl-C, logs, bounds."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from logging import WARNING
from pathlib import Path

from firmware.console import session as session_module
from firmware.console.port import open_console_port
from firmware.console.session import ConsoleSession
from firmware.errors import NotFound
from firmware.executor import BoundedExecutor
from tests.peers.waiting import wait_until_async

from .terminal import Terminal

# The daemon runs blocking opens in its bounded executor; so do these tests.
run_blocking = BoundedExecutor().run


PROMPT = "ek> "


@dataclass(frozen=True)
class Result:
    text: str
    exit_code: int = 0


class Commands:
    """A stand-in for the command table: records argv, answers a few commands."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.release = asyncio.Event()
        self.cancelled = False
        self.big_output = ""

    async def __call__(self, argv: list[str], *, read_only: bool = False, terminal=None) -> Result:
        self.calls.append(argv)
        if argv[0] in ("slow", "patient"):
            try:
                await self.release.wait()
            except asyncio.CancelledError:
                self.cancelled = True
                if argv[0] == "patient":  # a command that says itself what the stop means
                    terminal.write("stopped waiting for the patient: it goes on alone\n")
                raise
            return Result("slow done")
        if argv[0] == "big":
            return Result(self.big_output)
        if argv[0] == "missing":
            raise NotFound("module 'x' not found", hint="list modules with `edgekeeper list`")
        if argv[0] == "crash":
            raise RuntimeError("bug")
        return Result(f"ran {' '.join(argv)}\nsecond line")


async def start(tmp_path: Path, commands: Commands):
    port = await open_console_port("pty", 115200, tmp_path, run_blocking)
    session = ConsoleSession(port, commands, prompt=PROMPT, banner="edgekeeper test console")
    task = asyncio.create_task(session.serve())
    terminal = Terminal(tmp_path)
    await terminal.expect(PROMPT)
    return session, task, terminal, port


async def stop(task, terminal, port) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    terminal.close()
    port.close()


def run(coro_fn):
    """Run an async test body that gets (tmp_path)."""

    def test(tmp_path):
        asyncio.run(coro_fn(tmp_path))

    test.__name__ = coro_fn.__name__
    test.__doc__ = coro_fn.__doc__
    return test


@run
async def test_banner_prompt_and_command_output_with_crlf(tmp_path):
    commands = Commands()
    _session, task, terminal, port = await start(tmp_path, commands)
    assert b"edgekeeper test console\r\n" in terminal.seen
    terminal.type("help\r")
    await terminal.expect("help\r\n")
    output = await terminal.expect(PROMPT)
    assert output == b"ran help\r\nsecond line\r\n"
    assert commands.calls == [["help"]]
    await stop(task, terminal, port)


@run
async def test_line_is_split_like_a_shell(tmp_path):
    commands = Commands()
    _session, task, terminal, port = await start(tmp_path, commands)
    terminal.type("log-level 'de bug' x\r")
    await terminal.expect("ran log-level")
    assert commands.calls == [["log-level", "de bug", "x"]]
    await stop(task, terminal, port)


@run
async def test_quoting_error_is_reported_and_nothing_runs(tmp_path):
    commands = Commands()
    _session, task, terminal, port = await start(tmp_path, commands)
    terminal.type('status "open\r')
    output = await terminal.expect(PROMPT)
    assert b"error: cannot read that line: No closing quotation" in output
    assert commands.calls == []
    await stop(task, terminal, port)


@run
async def test_exit_logout_and_empty_lines_just_prompt(tmp_path):
    commands = Commands()
    _session, task, terminal, port = await start(tmp_path, commands)
    terminal.type("exit\rlogout\r\r")
    for _ in range(3):
        await terminal.expect(PROMPT)
    assert commands.calls == []
    await stop(task, terminal, port)


@run
async def test_errors_are_rendered_once_and_the_console_goes_on(tmp_path):
    commands = Commands()
    _session, task, terminal, port = await start(tmp_path, commands)
    terminal.type("missing\r")
    output = await terminal.expect(PROMPT)
    assert b"error: module 'x' not found (list modules with `edgekeeper list`)\r\n" in output
    terminal.type("crash\r")
    output = await terminal.expect(PROMPT)
    assert b"error: internal error" in output
    assert b"bug" not in output
    terminal.type("version\r")
    assert b"ran version" in await terminal.expect(PROMPT)
    await stop(task, terminal, port)


@run
async def test_backspace_corrects_a_typo(tmp_path):
    commands = Commands()
    _session, task, terminal, port = await start(tmp_path, commands)
    terminal.type("hepl\x7f\x7flp\r")
    await terminal.expect("ran help")
    assert commands.calls == [["help"]]
    await stop(task, terminal, port)


@run
async def test_ctrl_c_cancels_the_line(tmp_path):
    commands = Commands()
    _session, task, terminal, port = await start(tmp_path, commands)
    terminal.type("reboot\x03")
    await terminal.expect("^C\r\n" + PROMPT)
    terminal.type("\r")
    await terminal.expect(PROMPT)
    assert commands.calls == []
    await stop(task, terminal, port)


@run
async def test_slow_command_does_not_block_reading_and_ctrl_c_cancels_it(tmp_path):
    commands = Commands()
    _session, task, terminal, port = await start(tmp_path, commands)
    terminal.type("slow\r")
    await terminal.expect("slow\r\n")
    await wait_until_async(
        lambda: commands.calls == [["slow"]], timeout_s=5, what="the slow command to start"
    )
    terminal.type("\x03")
    await terminal.expect("^C: stopped waiting for `slow`\r\n" + PROMPT)
    assert commands.cancelled
    terminal.type("version\r")
    assert b"ran version" in await terminal.expect(PROMPT)
    await stop(task, terminal, port)


@run
async def test_ctrl_c_says_only_what_the_command_did_not_say_itself(tmp_path):
    commands = Commands()
    _session, task, terminal, port = await start(tmp_path, commands)
    terminal.type("patient\r")
    await wait_until_async(
        lambda: commands.calls == [["patient"]], timeout_s=5, what="the command to start"
    )
    terminal.type("\x03")
    shown = await terminal.expect(PROMPT)
    assert b"stopped waiting for the patient: it goes on alone\r\n^C\r\n" in shown
    assert b"stopped waiting for `patient`" not in shown
    await stop(task, terminal, port)


@run
async def test_ctrl_c_right_behind_enter_cancels_before_the_command_starts(tmp_path):
    commands = Commands()
    _session, task, terminal, port = await start(tmp_path, commands)
    terminal.type("slow\r\x03")
    await terminal.expect("^C: stopped waiting for `slow`\r\n" + PROMPT)
    terminal.type("version\r")
    assert b"ran version" in await terminal.expect(PROMPT)
    assert commands.calls == [["version"]]
    await stop(task, terminal, port)


@run
async def test_lines_typed_during_a_command_run_after_it(tmp_path):
    commands = Commands()
    _session, task, terminal, port = await start(tmp_path, commands)
    terminal.type("slow\r")
    await terminal.expect("slow\r\n")
    terminal.type("version\rsta")
    # Time passing is the subject: what is typed during a command is not run before it ends.
    await asyncio.sleep(0.05)
    assert commands.calls == [["slow"]]
    commands.release.set()
    await terminal.expect("slow done\r\n" + PROMPT + "version\r\n")
    await terminal.expect("ran version\r\nsecond line\r\n" + PROMPT + "sta")
    terminal.type("tus\r")
    await terminal.expect("ran status")
    assert commands.calls == [["slow"], ["version"], ["status"]]
    await stop(task, terminal, port)


@run
async def test_log_line_while_typing_redraws_prompt_and_input(tmp_path):
    commands = Commands()
    session, task, terminal, port = await start(tmp_path, commands)
    terminal.type("sta")
    await terminal.expect("sta")
    session.post_log("WARNING daemon: something happened", WARNING)
    await terminal.expect("\r\x1b[KWARNING daemon: something happened\r\n" + PROMPT + "sta")
    terminal.type("tus\r")
    await terminal.expect("ran status")
    assert commands.calls == [["status"]]
    await stop(task, terminal, port)


@run
async def test_log_lines_never_tear_command_output(tmp_path):
    commands = Commands()
    commands.big_output = "".join(f"output-{n:05d}\n" for n in range(8000))
    session, task, terminal, port = await start(tmp_path, commands)
    loop = asyncio.get_running_loop()
    for n in range(50):
        loop.call_later(n * 0.002, session.post_log, f"LOG-{n}", WARNING)
    terminal.type("big\r")
    await terminal.expect("big\r\n")
    block = await terminal.expect(PROMPT, within=20)
    text = block.decode()
    first = text.index("output-00000")
    last = text.index("output-07999\r\n") + len("output-07999\r\n")
    assert "LOG-" not in text[first:last]
    assert text[first:last] == commands.big_output.replace("\n", "\r\n")
    await terminal.quiet(0.3)
    assert terminal.seen.count(b"LOG-") == 50
    await stop(task, terminal, port)


@run
async def test_long_line_and_noise_are_refused_and_the_console_answers(tmp_path):
    commands = Commands()
    _session, task, terminal, port = await start(tmp_path, commands)
    terminal.type(b"x" * 2000 + b"\r")
    assert b"error: line refused: longer than 512 bytes" in await terminal.expect(PROMPT)
    terminal.type(bytes(range(256)) * 4 + b"\xff\xfe\x00\x1b[" + b"\r")
    # Pacing: the noise is read on its own, then Ctrl-C clears whatever it left on the line.
    await asyncio.sleep(0.2)
    terminal.type("\x03version\r")
    await terminal.expect("ran version")
    assert commands.calls == [["version"]]
    await stop(task, terminal, port)


@run
async def test_nobody_reading_keeps_output_bounded_and_counts_dropped_logs(tmp_path):
    commands = Commands()
    port = await open_console_port("pty", 115200, tmp_path, run_blocking)
    session = ConsoleSession(port, commands, prompt=PROMPT)
    task = asyncio.create_task(session.serve())
    for n in range(20000):
        session.post_log(f"log line {n:06d} " + "x" * 60, WARNING)
        if n % 500 == 0:
            await asyncio.sleep(0)
    await wait_until_async(
        lambda: port.backlog <= session_module.OUTPUT_LIMIT + session_module.LOG_BACKLOG * 200,
        timeout_s=5,
        what="the console's output bounded",
    )
    assert session.dropped_logs > 0
    assert len(session._logs) <= session_module.LOG_BACKLOG
    terminal = Terminal(tmp_path)
    await terminal.expect("log lines dropped: nobody was reading]", within=10)
    await terminal.expect("log line 019999")
    await stop(task, terminal, port)
