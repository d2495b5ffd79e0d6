"""The console session's keys over a real pty: completion (held input, listing, failures, time
bound), history, editing kept while a command runs, Ctrl-L, Ctrl-C's message, the width asked of
the terminal, and a command's streamed output."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from logging import WARNING

from firmware.console import session as session_module
from firmware.console.port import open_console_port
from firmware.console.session import CLEAR_SCREEN, WIDTH_QUESTION, ConsoleSession
from firmware.executor import BoundedExecutor
from tests.peers.waiting import wait_until_async

from .terminal import Terminal

run_blocking = BoundedExecutor().run
PROMPT = "ek> "
LEFT = "\x1b[D"
UP = "\x1b[A"


@dataclass(frozen=True)
class Result:
    text: str
    exit_code: int = 0


class Commands:
    """Records argv and the terminal each command got; `slow` waits, `stream` writes first."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.terminals: list[object] = []
        self.release = asyncio.Event()

    async def __call__(self, argv, *, read_only=False, terminal=None):
        self.calls.append(argv)
        self.terminals.append(terminal)
        if argv[0] == "slow":
            await self.release.wait()
            return Result("slow done")
        if argv[0] == "stream":
            await asyncio.to_thread(terminal.write, "progress 1\n")  # from a worker thread
            terminal.write("waiting... ")
            await self.release.wait()
            return Result("streamed")
        return Result(f"ran {' '.join(argv)}")


class Words:
    """A completer double: fixed words, after `delay`; `fail` raises instead."""

    def __init__(self, words=(), *, delay=0.0, fail=False) -> None:
        self.words = list(words)
        self.delay = delay
        self.fail = fail
        self.asked: list[str] = []

    async def candidates(self, before):
        self.asked.append(before)
        await asyncio.sleep(self.delay)
        if self.fail:
            raise RuntimeError("no names today")
        last = "" if not before or before.endswith(" ") else before.split()[-1]
        return [word for word in self.words if word.startswith(last)]


class Console:
    def __init__(self, tmp_path, commands=None, **options) -> None:
        self.tmp_path = tmp_path
        self.commands = commands or Commands()
        self.options = {"columns": 80, **options}

    async def __aenter__(self) -> Console:
        self.port = await open_console_port("pty", 115200, self.tmp_path, run_blocking)
        self.session = ConsoleSession(self.port, self.commands, prompt=PROMPT, **self.options)
        self.task = asyncio.create_task(self.session.serve())
        self.terminal = Terminal(self.tmp_path)
        await self.terminal.expect(PROMPT)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        self.terminal.close()
        self.port.close()


def run(coro_fn):
    def test(tmp_path):
        asyncio.run(coro_fn(tmp_path))

    test.__name__ = coro_fn.__name__
    return test


@run
async def test_tab_completes_and_keys_typed_after_it_land_after_the_completion(tmp_path):
    words = Words(["status", "list"], delay=0.1)
    async with Console(tmp_path, completer=words) as c:
        c.terminal.type("sta\tagent\r")  # one burst: "agent" waits for the completion
        await c.terminal.expect("ran status agent")
        assert c.commands.calls == [["status", "agent"]]
        assert words.asked == ["sta"]


@run
async def test_a_second_tab_lists_the_words_and_redraws_the_line(tmp_path):
    async with Console(tmp_path, completer=Words(["start", "stop", "status"])) as c:
        c.terminal.type("st\t")
        await c.terminal.expect("st\x07")
        c.terminal.type("\t")
        await c.terminal.expect("\r\nstart   status  stop\r\n" + PROMPT + "st")
        c.terminal.type("op\r")
        await c.terminal.expect("ran stop")


@run
async def test_a_failing_or_hanging_completer_completes_nothing_and_typing_goes_on(tmp_path):
    async with Console(tmp_path, completer=Words(["status"], fail=True)) as c:
        c.terminal.type("sta\ttus\r")
        await c.terminal.expect("ran status")
    session_module.COMPLETION_WAIT_S, saved = 0.2, session_module.COMPLETION_WAIT_S
    try:
        async with Console(tmp_path, completer=Words(["status"], delay=60)) as c:
            loop = asyncio.get_running_loop()
            started = loop.time()
            c.terminal.type("sta\ttus\r")
            await c.terminal.expect("ran status")
            assert loop.time() - started < 2
    finally:
        session_module.COMPLETION_WAIT_S = saved


@run
async def test_no_completer_means_tab_does_nothing(tmp_path):
    async with Console(tmp_path) as c:
        c.terminal.type("sta\ttus\r")
        await c.terminal.expect("ran status")


@run
async def test_up_arrow_brings_back_the_last_line(tmp_path):
    async with Console(tmp_path) as c:
        c.terminal.type("version\r")
        await c.terminal.expect("ran version\r\n" + PROMPT)
        c.terminal.type(UP)
        await c.terminal.expect("version")
        c.terminal.type(LEFT * 7 + "x\r")
        await c.terminal.expect("ran xversion")
        assert c.commands.calls == [["version"], ["xversion"]]


@run
async def test_ctrl_l_clears_the_screen_and_redraws_prompt_and_line(tmp_path):
    async with Console(tmp_path) as c:
        c.terminal.type("stat" + LEFT + "\x0c")
        await c.terminal.expect(CLEAR_SCREEN + PROMPT.encode() + b"stat\b")


@run
async def test_a_line_edited_while_a_command_runs_is_shown_with_the_cursor_in_place(tmp_path):
    async with Console(tmp_path) as c:
        c.terminal.type("slow\r")
        await wait_until_async(lambda: c.commands.calls, timeout_s=5, what="slow to start")
        c.terminal.type("stts" + LEFT * 2 + "a")
        c.terminal.type("\t\x0c")  # Tab and Ctrl-L during a command: nothing on screen
        await asyncio.sleep(0.05)  # the keys are read while the command runs
        c.commands.release.set()
        await c.terminal.expect("slow done\r\n" + PROMPT + "stats\b\b")
        c.terminal.type("\r")
        await c.terminal.expect("ran stats")
        assert CLEAR_SCREEN not in c.terminal.seen


@run
async def test_ctrl_c_names_the_command_and_counts_what_it_discards(tmp_path):
    async with Console(tmp_path) as c:
        c.terminal.type("slow  now\r")
        await wait_until_async(lambda: c.commands.calls, timeout_s=5, what="slow to start")
        c.terminal.type("version\rlist\rhalf")
        await asyncio.sleep(0.05)
        c.terminal.type("\x03")
        await c.terminal.expect(
            "^C: stopped waiting for `slow  now`; discarded 3 lines typed meanwhile\r\n" + PROMPT
        )
        assert c.commands.calls == [["slow", "now"]]


@run
async def test_lines_typed_beyond_the_queue_are_dropped_and_said(tmp_path):
    async with Console(tmp_path) as c:
        c.terminal.type("slow\r")
        await wait_until_async(lambda: c.commands.calls, timeout_s=5, what="slow to start")
        c.terminal.type("".join(f"v{n}\r" for n in range(session_module.QUEUED_LINES + 2)))
        await asyncio.sleep(0.05)
        c.commands.release.set()
        await c.terminal.expect("[console: dropped 2 lines typed during the command: at most 8")
        await c.terminal.expect("ran v7")
        assert len(c.commands.calls) == 1 + session_module.QUEUED_LINES


@run
async def test_the_width_is_asked_once_at_the_shell_and_the_answer_reaches_commands(tmp_path):
    async with Console(tmp_path, columns=0) as c:
        await c.terminal.expect(WIDTH_QUESTION)
        c.terminal.type("ver\x1b[24;132Rsion\r")  # the answer arrives among typed keys
        await c.terminal.expect("ran version")
        assert c.session.columns == 132
        assert c.commands.terminals[-1].columns == 132
        assert c.terminal.seen.count(WIDTH_QUESTION) == 1


@run
async def test_without_an_answer_the_width_is_80_and_late_or_narrow_answers_are_keys(tmp_path):
    async with Console(tmp_path, columns=0) as c:
        await c.terminal.expect(WIDTH_QUESTION)
        c.terminal.type("\x1b[1;2R")  # Shift-F3 on xterm: not a width
        await asyncio.sleep(session_module.WIDTH_WAIT_S + 0.1)
        c.terminal.type("\x1b[24;132Rversion\r")  # too late
        await c.terminal.expect("ran version")
        assert c.session.columns == 80
        assert c.commands.terminals[-1].columns == 80


@run
async def test_a_configured_width_asks_nothing(tmp_path):
    async with Console(tmp_path, columns=100) as c:
        c.terminal.type("version\r")
        await c.terminal.expect("ran version")
        assert WIDTH_QUESTION not in c.terminal.seen
        assert c.commands.terminals[-1].columns == 100


@run
async def test_streamed_output_shows_at_once_and_log_lines_do_not_join_an_open_line(tmp_path):
    async with Console(tmp_path) as c:
        c.terminal.type("stream\r")
        await c.terminal.expect("progress 1\r\nwaiting... ")
        c.session.post_log("WARNING runtime: agent restarted", WARNING)
        await c.terminal.expect("\r\nWARNING runtime: agent restarted\r\n")
        c.commands.release.set()
        await c.terminal.expect("streamed\r\n" + PROMPT)
