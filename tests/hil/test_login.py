"""The console's login, over the serial line: a console with a password (the sim board's second
daemon, or a farm board given with `--port` and `--console-password`).

Nothing here locks the console: one wrong password at most per test, and a right one after it
resets the count (the sim daemon allows 5 in a row).
"""

from __future__ import annotations

import re
import time

import pytest
from pytest_embedded.plugin import multi_dut_argument
from pytest_embedded.utils import to_list

PROMPT = "edgekeeper> "
LOGIN = "login: "
TIMEOUT_S = 15
AT_PROMPT = re.compile(rb"\^C\r\n(edgekeeper> |login: )")


@pytest.fixture
@multi_dut_argument
def port(request: pytest.FixtureRequest) -> str | None:
    """`--port` with `--console-password` (a farm board), else the sim board with a login."""
    given = request.config.getoption("port", None)
    if given:
        if request.config.getoption("console_password") is None:
            pytest.skip("the login tests need the board's --console-password")
        return given
    return request.getfixturevalue("sim_login_console")


def send(board, data: bytes) -> None:
    """Raw bytes to the console (`dut.write` would append a newline)."""
    board.serial.proc.write(data)


@pytest.fixture
def consoles(dut) -> list:
    """The DUT(s), each logged out at `login: ` (logging out whoever was logged in)."""
    duts = to_list(dut)
    for board in duts:
        send(board, b"\x03")
        found = board.expect(AT_PROMPT, timeout=TIMEOUT_S)
        if found.group(1) == PROMPT.encode():
            send(board, b"logout\r")
            board.expect_exact(LOGIN, timeout=TIMEOUT_S)
    return duts


def log_in(board, password: str) -> None:
    send(board, b"\x03")
    board.expect_exact(LOGIN, timeout=TIMEOUT_S)
    send(board, b"technician\r")
    board.expect_exact("Password: ", timeout=TIMEOUT_S)
    send(board, password.encode() + b"\r")
    board.expect_exact("logged in (logout ends it)", timeout=TIMEOUT_S)
    board.expect_exact(PROMPT, timeout=TIMEOUT_S)


def test_the_console_asks_for_a_login_and_runs_nothing_before(consoles):
    for board in consoles:
        send(board, b"version\r")  # only a login name here
        board.expect_exact("Password: ", timeout=TIMEOUT_S)
        send(board, b"\x03")
        board.expect_exact(LOGIN, timeout=TIMEOUT_S)


def test_the_password_is_not_echoed_and_commands_run_after_login(consoles, console_password):
    for board in consoles:
        send(board, b"technician\r")
        board.expect_exact("Password: ", timeout=TIMEOUT_S)
        send(board, console_password.encode() + b"\r")
        echoed = board.expect_exact("logged in (logout ends it)", timeout=TIMEOUT_S)
        assert console_password.encode() not in echoed
        board.expect_exact(PROMPT, timeout=TIMEOUT_S)
        send(board, b"version\r")
        board.expect_exact("edgekeeper ", timeout=TIMEOUT_S)
        board.expect_exact(PROMPT, timeout=TIMEOUT_S)
        send(board, b"logout\r")
        board.expect_exact("logged out", timeout=TIMEOUT_S)
        board.expect_exact(LOGIN, timeout=TIMEOUT_S)


def test_a_wrong_password_is_refused_after_a_pause(consoles, console_password):
    for board in consoles:
        send(board, b"technician\rnot-the-password\r")
        board.expect_exact("login incorrect", timeout=TIMEOUT_S)
        refused_at = time.monotonic()
        board.expect_exact(LOGIN, timeout=TIMEOUT_S)
        assert time.monotonic() - refused_at >= 0.5
        log_in(board, console_password)  # resets the count of failures
