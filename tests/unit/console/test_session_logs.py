"""Daemon log lines on the console: the session's own level, `log`, `log mute`, `log follow`,
`log level`, repeated lines collapsed, and the level handed over by the daemon's log control."""

from __future__ import annotations

import asyncio
import io
import logging
from logging import ERROR, INFO, WARNING

from firmware.console import session as session_module
from firmware.daemon.logs import LogControl

from .terminal import Terminal
from .test_service import console_service, context, echo_command, stop_console
from .test_session_keys import PROMPT, Console, run


@run
async def test_lines_below_the_console_level_are_not_shown(tmp_path):
    async with Console(tmp_path, log_level="warning") as c:
        c.session.post_log("INFO keys: chatty", INFO)
        c.session.post_log("ERROR keys: broken", ERROR)
        await c.terminal.expect("ERROR keys: broken\r\n" + PROMPT)
        assert b"chatty" not in c.terminal.seen


@run
async def test_log_says_the_state_and_level_changes_it_for_the_session(tmp_path):
    async with Console(tmp_path, daemon_log_level=lambda: "info") as c:
        c.terminal.type("log\r")
        await c.terminal.expect("console log: following daemon lines at warning and above\r\n")
        c.terminal.type("log level info\r")
        await c.terminal.expect("console log level for this session: info\r\n")
        c.session.post_log("INFO keys: now shown", INFO)
        await c.terminal.expect("INFO keys: now shown\r\n")
        c.terminal.type("log level debug\r")
        await c.terminal.expect(
            "console log level for this session: debug; the daemon logs only info and above "
            "(`log-level` changes that)\r\n"
        )
        c.terminal.type("log level loud\r")
        await c.terminal.expect("error: log: say `log`, `log mute`, `log follow`")
        c.terminal.type("log bogus\r")
        await c.terminal.expect("error: log: say")
        assert c.commands.calls == []  # the session's own command


@run
async def test_mute_counts_lines_and_follow_says_how_many(tmp_path):
    async with Console(tmp_path) as c:
        c.terminal.type("log mute\r")
        await c.terminal.expect("console log muted: `log follow` shows daemon lines again\r\n")
        for n in range(3):
            c.session.post_log(f"WARNING keys: muted {n}", WARNING)
        c.session.post_log("INFO keys: below the level, not counted", INFO)
        c.terminal.type("log\r")
        await c.terminal.expect("console log: muted (3 lines held back so far)")
        c.terminal.type("log follow\r")
        await c.terminal.expect("console log followed: 3 lines were muted (`system logs` shows")
        c.session.post_log("WARNING keys: after", WARNING)
        await c.terminal.expect("WARNING keys: after\r\n")
        assert b"muted 0" not in c.terminal.seen
        c.terminal.type("log follow\r")
        await c.terminal.expect("console log followed: no lines were muted")


@run
async def test_a_command_streams_even_while_the_log_is_muted(tmp_path):
    async with Console(tmp_path) as c:
        c.terminal.type("log mute\r")
        await c.terminal.expect("muted")
        c.terminal.type("stream\r")
        await c.terminal.expect("progress 1\r\nwaiting... ")
        c.commands.release.set()
        await c.terminal.expect("streamed")


@run
async def test_repeated_lines_are_counted_and_said_before_the_next_different_one(tmp_path):
    async with Console(tmp_path) as c:
        for second in range(5):
            c.session.post_log(f"2026-11-27T10:00:0{second}.000Z WARNING dps: retrying", WARNING)
        c.session.post_log("2026-11-27T10:00:09.000Z ERROR dps: gave up", ERROR)
        await c.terminal.expect("ERROR dps: gave up")
        shown = bytes(c.terminal.seen)
        assert shown.count(b"retrying") == 1
        assert b"[console: last log line repeated 4 more times]\r\n" in shown
        assert shown.index(b"repeated 4") < shown.index(b"gave up")


@run
async def test_a_run_of_repeats_is_said_after_a_while_without_a_new_line(tmp_path):
    session_module.REPEAT_NOTE_S, saved = 0.1, session_module.REPEAT_NOTE_S
    try:
        async with Console(tmp_path) as c:
            for _ in range(3):
                c.session.post_log("WARNING dps: retrying", WARNING)
            await c.terminal.expect("[console: last log line repeated 2 more times]")
            c.session.post_log("WARNING dps: retrying", WARNING)
            await c.terminal.expect("[console: last log line repeated 1 more time]")
            assert c.terminal.seen.count(b"WARNING dps: retrying") == 1
    finally:
        session_module.REPEAT_NOTE_S = saved


def test_the_daemon_hands_the_console_each_line_with_its_level():
    control = LogControl(level="debug", stream=io.StringIO())
    seen: list[tuple[str, int]] = []
    plain: list[str] = []
    try:
        remove = control.add_level_sink(lambda line, level: seen.append((line, level)))
        control.add_sink(plain.append)
        logging.getLogger("edgekeeper.keys").info("one")
        logging.getLogger("edgekeeper.keys").error("two")
        remove()
        logging.getLogger("edgekeeper.keys").warning("three")
    finally:
        control.close()
    assert [(line.split(" ", 1)[1], level) for line, level in seen] == [
        ("INFO keys: one", INFO),
        ("ERROR keys: two", ERROR),
    ]
    assert len(plain) == 3


def test_the_service_shows_warnings_but_not_info_by_default(tmp_path):
    async def body():
        ctx = context(tmp_path, columns=80)
        ctx.logs.attach_loop(asyncio.get_running_loop())
        service = console_service(ctx, echo_command)
        await service.prepare()
        task = asyncio.create_task(service.run())
        terminal = Terminal(tmp_path)
        try:
            await terminal.expect("edgekeeper> ")
            logging.getLogger("edgekeeper.runtime").info("quiet detail")
            logging.getLogger("edgekeeper.runtime").warning("agent restarted")
            await terminal.expect("WARNING runtime: agent restarted\r\n")
            assert b"quiet detail" not in terminal.seen
            assert service.describe()["columns"] == 80
        finally:
            await stop_console(ctx, task, terminal)

    asyncio.run(body())
