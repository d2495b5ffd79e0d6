"""A console session with a login, over a real pty: no echo of the password, delays and lockout
on the event loop, read-only commands, idle logout, and log lines only for who may read them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

import pytest

from firmware.console.login import LoginDialog, LoginLedger, LoginRules
from firmware.console.port import open_console_port
from firmware.console.session import WIDTH_QUESTION, ConsoleLogin, ConsoleSession
from firmware.errors import Forbidden
from firmware.executor import BoundedExecutor
from tests.peers.waiting import wait_until_async

from .terminal import Terminal
from .test_session import PROMPT, Result

RIGHT = "sw0rdfish-42"
run_blocking = BoundedExecutor().run


class Commands:
    """Records each command and whether it was run read-only; refuses `change` read-only."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], bool]] = []

    async def __call__(self, argv: list[str], *, read_only: bool = False, terminal=None) -> Result:
        self.calls.append((argv, read_only))
        if argv[0] == "change" and read_only:
            raise Forbidden("change changes the gateway: log in first", hint="login")
        return Result(f"ran {' '.join(argv)}")


class Checks:
    """The password check: counts the passwords it is given, right when it is RIGHT."""

    def __init__(self, fail_with: Exception | None = None) -> None:
        self.count = 0
        self.fail_with = fail_with

    async def __call__(self, password: str) -> bool:
        self.count += 1
        if self.fail_with is not None:
            raise self.fail_with
        return password == RIGHT


def rules(**changes) -> LoginRules:
    values = {
        "attempts": 3,
        "lockout_s": 300.0,
        "idle_logout_s": 900.0,
        "read_only_without_login": False,
        "first_delay_s": 0.2,
        "max_delay_s": 1.0,
        **changes,
    }
    return LoginRules(**values)


class Console:
    """One session with a login on a pty, and the technician's terminal on it."""

    def __init__(self, tmp_path: Path, ledger: LoginLedger, checks: Checks, **options) -> None:
        self.tmp_path = tmp_path
        self.ledger = ledger
        self.checks = checks
        self.commands = Commands()
        self.options = options

    async def __aenter__(self) -> Console:
        self.port = await open_console_port("pty", 115200, self.tmp_path, run_blocking)
        login = ConsoleLogin(LoginDialog(self.ledger), self.checks)
        self.session = ConsoleSession(
            self.port, self.commands, prompt=PROMPT, login=login, **self.options
        )
        self.task = asyncio.create_task(self.session.serve())
        self.terminal = Terminal(self.tmp_path)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        self.terminal.close()
        self.port.close()

    async def log_in(self, password: str = RIGHT) -> bytes:
        self.terminal.type(f"tech\r{password}\r")
        return await self.terminal.expect("logged in (logout ends it)\r\n" + PROMPT)


def console(tmp_path: Path, checks: Checks | None = None, **rule_changes) -> Console:
    return Console(tmp_path, LoginLedger(rules(**rule_changes)), checks or Checks())


def run(coro_fn):
    def test(tmp_path):
        asyncio.run(coro_fn(tmp_path))

    test.__name__ = coro_fn.__name__
    test.__doc__ = coro_fn.__doc__
    return test


@run
async def test_the_password_is_never_echoed_and_the_right_one_logs_in(tmp_path):
    async with console(tmp_path) as c:
        await c.terminal.expect("login: ")
        c.terminal.type("tech\r")
        await c.terminal.expect("tech\r\nPassword: ")
        c.terminal.type(RIGHT[:4] + "x\x7f")
        c.terminal.type(RIGHT[4:] + "\r")
        await c.terminal.expect("\r\nlogged in (logout ends it)\r\n" + PROMPT)
        c.terminal.type("change it\r")
        await c.terminal.expect("ran change it\r\n" + PROMPT)
        assert c.commands.calls == [(["change", "it"], False)]
        assert RIGHT.encode() not in c.terminal.seen and b"fish" not in c.terminal.seen
        assert c.session.login.dialog.logged_in


@run
async def test_a_burst_of_name_password_and_command_echoes_no_password(tmp_path):
    async with console(tmp_path) as c:
        await c.terminal.expect("login: ")
        c.terminal.type(f"tech\r{RIGHT}\rchange it\r")
        await c.terminal.expect("logged in (logout ends it)\r\n" + PROMPT)
        assert await c.terminal.quiet(0.2) == b""
        assert c.commands.calls == []  # typed while the password was checked: dropped
        assert RIGHT.encode() not in c.terminal.seen


@run
async def test_before_login_nothing_runs(tmp_path):
    async with console(tmp_path) as c:
        await c.terminal.expect("login: ")
        c.terminal.type("\r")
        await c.terminal.expect("\r\nlogin: ")
        c.terminal.type("exit\r")
        await c.terminal.expect("Password: ")
        c.terminal.type("\x03")
        await c.terminal.expect("^C\r\nlogin: ")
        assert c.commands.calls == [] and c.checks.count == 0


@run
async def test_a_wrong_password_pauses_the_console_then_asks_again(tmp_path):
    loop = asyncio.get_running_loop()
    async with console(tmp_path) as c:
        await c.terminal.expect("login: ")
        c.terminal.type("tech\rwrong-password\r")
        await c.terminal.expect("login incorrect\r\n")
        failed_at = loop.time()
        c.terminal.type(f"tech\r{RIGHT}\r")  # typed during the pause: ignored
        await c.terminal.expect("login: ")
        assert loop.time() - failed_at >= 0.15
        assert c.checks.count == 1
        c.terminal.type("tech\ranother-wrong\r")
        await c.terminal.expect("login incorrect\r\n")
        failed_at = loop.time()
        await c.terminal.expect("login: ")
        assert loop.time() - failed_at >= 0.35  # twice the first delay
        await c.log_in()
        assert c.ledger.failures == 0


@run
async def test_failures_in_a_row_lock_the_console_even_against_the_right_password(tmp_path):
    async with console(tmp_path, attempts=2, lockout_s=1.0) as c:
        await c.terminal.expect("login: ")
        c.terminal.type("tech\rwrong-one\r")
        await c.terminal.expect("login incorrect\r\nlogin: ")
        c.terminal.type("tech\rwrong-two\r")
        await c.terminal.expect(
            "login incorrect\r\nconsole locked for 1s: 2 failed logins in a row\r\n"
        )
        await c.terminal.expect("login: ")
        c.terminal.type("tech\r")
        await c.terminal.expect("console locked: try again in 1s\r\nlogin: ")
        assert c.checks.count == 2
        await asyncio.sleep(1.0)  # the lockout's length is the subject
        await c.log_in()
        assert c.checks.count == 3


@run
async def test_a_reconnected_line_is_still_locked(tmp_path):
    ledger = LoginLedger(rules(attempts=1, lockout_s=60.0))
    async with Console(tmp_path, ledger, Checks()) as c:
        await c.terminal.expect("login: ")
        c.terminal.type("tech\rwrong-one\r")
        await c.terminal.expect("console locked for 1m 00s")
    async with Console(tmp_path, ledger, Checks()) as again:
        await again.terminal.expect("login: ")
        again.terminal.type("tech\r")
        await again.terminal.expect("console locked: try again in ")
        assert again.checks.count == 0


@run
async def test_a_failing_check_counts_as_a_wrong_password(tmp_path):
    async with console(tmp_path, Checks(fail_with=MemoryError())) as c:
        await c.terminal.expect("login: ")
        c.terminal.type(f"tech\r{RIGHT}\r")
        await c.terminal.expect("login incorrect\r\n")
        assert c.ledger.failures == 1


@run
async def test_read_only_commands_run_without_login_and_others_are_refused(tmp_path):
    async with console(tmp_path, read_only_without_login=True) as c:
        await c.terminal.expect(PROMPT)
        c.terminal.type("status\r")
        await c.terminal.expect("ran status\r\n" + PROMPT)
        c.terminal.type("change it\r")
        output = await c.terminal.expect(PROMPT)
        assert b"error: change changes the gateway: log in first (login)\r\n" in output
        c.terminal.type("logout\r")
        assert b"not logged in" in await c.terminal.expect(PROMPT)
        c.terminal.type("login\r")
        await c.terminal.expect("login: ")
        await c.log_in()
        c.terminal.type("change it\r")
        await c.terminal.expect("ran change it\r\n" + PROMPT)
        c.terminal.type("logout\r")
        await c.terminal.expect("logged out\r\n" + PROMPT)
        c.terminal.type("change it\r")
        assert b"log in first" in await c.terminal.expect(PROMPT)
        assert [read_only for _, read_only in c.commands.calls] == [True, True, False, True]


@run
async def test_lines_typed_ahead_of_login_are_never_taken_as_a_name_or_password(tmp_path):
    async with console(tmp_path, read_only_without_login=True) as c:
        await c.terminal.expect(PROMPT)
        release = asyncio.Event()

        async def slow(argv, *, read_only=False, terminal=None):
            await release.wait()
            return Result("slow done")

        c.session._run_command = slow
        c.terminal.type("status\r")
        await c.terminal.expect("status\r\n")
        c.terminal.type(f"login\rtech\r{RIGHT}\r")
        await c.terminal.quiet(0.1)
        release.set()
        await c.terminal.expect("slow done\r\n" + PROMPT + "login\r\nlogin: ")
        assert await c.terminal.quiet(0.2) == b""
        assert c.checks.count == 0
        assert RIGHT.encode() not in c.terminal.seen


@run
async def test_idle_logout_after_no_input(tmp_path):
    loop = asyncio.get_running_loop()
    async with console(tmp_path, idle_logout_s=1.0) as c:
        await c.terminal.expect("login: ")
        await c.log_in()
        logged_in_at = loop.time()
        await asyncio.sleep(0.6)  # input part-way through the idle time moves the timer on
        c.terminal.type("cha")
        await c.terminal.expect("cha")
        await c.terminal.expect("\r\x1b[Klogged out: no input for 1s\r\nlogin: ", within=3)
        assert loop.time() - logged_in_at >= 1.5
        assert not c.session.login.dialog.logged_in
        c.terminal.type("nge\r")
        await c.terminal.expect("Password: ")
        assert c.commands.calls == []


@run
async def test_log_lines_are_shown_only_to_whoever_may_read(tmp_path):
    async with console(tmp_path) as c:
        await c.terminal.expect("login: ")
        c.session.post_log("WARNING keys: secret-ish detail", logging.WARNING)
        c.terminal.type("tech\r")
        await c.terminal.expect("Password: ")
        await c.terminal.quiet(0.2)
        assert b"secret-ish" not in c.terminal.seen
        c.terminal.type(RIGHT + "\r")
        await c.terminal.expect(PROMPT)
        c.session.post_log("ERROR daemon: for the logged in", logging.ERROR)
        await c.terminal.expect("ERROR daemon: for the logged in\r\n" + PROMPT)


@run
async def test_a_log_line_during_the_password_does_not_redraw_it(tmp_path):
    async with console(tmp_path, read_only_without_login=True) as c:
        await c.terminal.expect(PROMPT)
        c.terminal.type("login\rtech\r")
        await c.terminal.expect("Password: ")
        c.terminal.type("sw0r")
        await c.terminal.quiet(0.1)
        c.session.post_log("ERROR daemon: something happened", logging.ERROR)
        await c.terminal.expect("\r\x1b[KERROR daemon: something happened\r\nPassword: ")
        c.terminal.type("dfish-42\r")
        await c.terminal.expect("logged in")
        assert b"sw0r" not in c.terminal.seen


@pytest.fixture
def login_log(caplog):
    caplog.set_level(logging.INFO, logger="edgekeeper.console")
    return caplog


def test_logins_are_logged_without_the_password_or_a_failed_name(tmp_path, login_log):
    async def body():
        async with console(tmp_path, attempts=2, lockout_s=60.0) as c:
            await c.terminal.expect("login: ")
            c.terminal.type("tech\rwrong-password\r")
            await c.terminal.expect("login incorrect\r\nlogin: ")
            await c.log_in()
            c.terminal.type("logout\r")
            await c.terminal.expect("logged out\r\nlogin: ")
            c.terminal.type(f"{RIGHT}\rwrong-1\r")  # the password typed at login: by mistake
            await c.terminal.expect("login incorrect\r\nlogin: ")
            c.terminal.type("tech\rwrong-2\r")
            await c.terminal.expect("console locked")
            c.terminal.type("tech\r")
            await c.terminal.expect("try again in")

    asyncio.run(body())
    records = [
        (r.levelname, r.getMessage(), r.fields)
        for r in login_log.records
        if r.name == "edgekeeper.console"
    ]
    assert records == [
        ("WARNING", "login failed", {"failures": 1, "retry_in_s": 0.2}),
        ("INFO", "login", {"name": "tech"}),
        ("INFO", "logout", {"reason": "logout"}),
        ("WARNING", "login failed", {"failures": 1, "retry_in_s": 0.2}),
        ("WARNING", "locked after failed logins", {"failures": 2, "lockout_s": 60.0}),
        ("WARNING", "login refused: locked", {"locked_for_s": 60}),
    ]
    text = login_log.text
    assert RIGHT not in text and "wrong-" not in text


def test_without_a_password_login_says_there_is_none_and_logout_just_prompts(tmp_path):
    async def body():
        port = await open_console_port("pty", 115200, tmp_path, run_blocking)
        commands = Commands()
        session = ConsoleSession(port, commands, prompt=PROMPT)
        task = asyncio.create_task(session.serve())
        terminal = Terminal(tmp_path)
        try:
            await terminal.expect(PROMPT)
            terminal.type("login\r")
            answer = await terminal.expect(PROMPT)
            assert b"no login here: [console] password_hash is not set\r\n" in answer
            terminal.type("logout\rchange it\r")
            await terminal.expect("logout\r\n" + PROMPT)
            await terminal.expect("ran change it\r\n" + PROMPT)
            assert commands.calls == [(["change", "it"], False)]
            assert session.login is None
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            terminal.close()
            port.close()

    asyncio.run(body())


class Everything:
    """A completer that offers a word for anything, and records what it was asked."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def candidates(self, before: str) -> list[str]:
        self.asked.append(before)
        return ["completed"]


@run
async def test_history_keeps_no_login_name_and_is_forgotten_at_logout(tmp_path):
    async with Console(tmp_path, LoginLedger(rules()), Checks()) as c:
        await c.terminal.expect("login: ")
        await c.log_in()
        c.terminal.type("status\r")
        await c.terminal.expect("ran status\r\n" + PROMPT)
        history = c.session._discipline.history
        assert history.lines == ("status",)  # not "tech", not the password
        c.terminal.type("logout\r")
        await c.terminal.expect("login: ")
        assert history.lines == ()
        c.terminal.type("\x1b[A\r")  # Up at the login prompt: nothing to recall
        await c.terminal.expect("\r\nlogin: ")


@run
async def test_no_completion_at_the_login_prompts(tmp_path):
    words = Everything()
    async with Console(tmp_path, LoginLedger(rules()), Checks(), completer=words) as c:
        await c.terminal.expect("login: ")
        c.terminal.type("te\t")
        await c.terminal.quiet(0.1)
        c.terminal.type("ch\r")
        await c.terminal.expect("Password: ")
        c.terminal.type("sw0\t")
        await c.terminal.quiet(0.1)
        assert words.asked == []
        c.terminal.type("rdfish-42\r")
        await c.terminal.expect("logged in (logout ends it)\r\n" + PROMPT)
        c.terminal.type("comp\t")
        await c.terminal.expect("leted ")
        assert words.asked == ["comp"]


@run
async def test_the_width_is_asked_after_the_login_not_before(tmp_path):
    async with Console(tmp_path, LoginLedger(rules()), Checks(), columns=0) as c:
        await c.terminal.expect("login: ")
        assert WIDTH_QUESTION not in c.terminal.seen
        await c.log_in()
        await c.terminal.expect(WIDTH_QUESTION)
        c.terminal.type("\x1b[50;120R")
        await wait_until_async(
            lambda: c.session.columns == 120, timeout_s=5, what="the width answer"
        )
