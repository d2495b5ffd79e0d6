"""The technician's console, driven over the serial line as a person would (sim pty or real UART).

Each test starts from a fresh prompt and checks what the console prints. Log lines may appear
between command outputs at any time, so the patterns search rather than match whole screens.
With `--count N` every test runs against each of the N boards.
"""

from __future__ import annotations

import re

import pytest
from pytest_embedded.utils import to_list

from firmware import __version__

PROMPT = "edgekeeper> "
TIMEOUT_S = 15
ANSWER = re.compile(rb"\r\n(.*?)" + re.escape(PROMPT.encode()), re.S)


def boards(dut) -> list:
    """The DUT(s) of this test, with a fresh prompt on each."""
    duts = to_list(dut)
    for board in duts:
        send(board, b"\x03")
        board.expect_exact(PROMPT, timeout=TIMEOUT_S)
    return duts


def send(board, data: bytes) -> None:
    """Raw bytes to the console (`dut.write` would append a newline)."""
    board.serial.proc.write(data)


def command(board, line: str) -> str:
    """Type `line` and Enter; the console's answer up to the next prompt."""
    send(board, line.encode() + b"\r")
    board.expect_exact(line, timeout=TIMEOUT_S)
    answer = board.expect(ANSWER, timeout=TIMEOUT_S)
    return answer.group(1).decode("utf-8", "replace")


@pytest.fixture
def consoles(dut) -> list:
    return boards(dut)


def test_prompt_appears_on_enter(consoles):
    for board in consoles:
        send(board, b"\r")
        board.expect_exact(PROMPT, timeout=TIMEOUT_S)


def test_help_lists_the_commands(consoles):
    for board in consoles:
        text = command(board, "help")
        for name in ("help", "version", "status", "log-level"):
            assert re.search(rf"\b{re.escape(name)}\b", text), f"{name} missing from help: {text!r}"


def test_version_prints_the_version(consoles):
    for board in consoles:
        assert __version__ in command(board, "version")


def test_status_shows_uptime_and_services(consoles):
    for board in consoles:
        text = command(board, "status").lower()
        assert re.search(r"\bup \d+", text), f"no uptime in {text!r}"
        assert "memory" in text, text
        assert re.search(r"^console\s+running\b", text, re.M), f"console not running: {text!r}"


def test_log_level_changes_and_comes_back(consoles):
    for board in consoles:
        for level in ("debug", "info"):
            text = command(board, f"log-level {level}")
            assert re.search(rf"(?m)^log level: {level}\s*$", text), text


def test_unknown_log_level_is_refused_with_the_choices(consoles):
    for board in consoles:
        text = command(board, "log-level loud").lower()
        assert "error" in text and "debug" in text, text


def test_backspace_corrects_a_typo(consoles):
    for board in consoles:
        send(board, b"verzz\x7f\x7fsion\r")
        text = board.expect(ANSWER, timeout=TIMEOUT_S).group(1).decode("utf-8", "replace")
        assert __version__ in text and "error" not in text.lower(), text


def test_ctrl_c_cancels_the_line(consoles):
    for board in consoles:
        send(board, b"status\x03")
        board.expect_exact("^C\r\n" + PROMPT, timeout=TIMEOUT_S)
        assert __version__ in command(board, "version")


def test_unknown_command_is_an_error_and_the_console_goes_on(consoles):
    for board in consoles:
        assert "error" in command(board, "no-such-command").lower()
        assert __version__ in command(board, "version")


def test_very_long_line_is_refused_and_the_console_answers(consoles):
    for board in consoles:
        send(board, b"version " + b"x" * 4000 + b"\r")
        board.expect_exact("longer than 512 bytes", timeout=TIMEOUT_S)
        board.expect_exact(PROMPT, timeout=TIMEOUT_S)
        assert __version__ in command(board, "version")


def test_binary_noise_is_refused_and_the_console_answers(consoles):
    noise = bytes(range(256)) * 8 + b"\xff\xfe\xc3\x28\x00\x00\x1b[99" + b"\x80" * 64
    for board in consoles:
        send(board, noise + b"\r")
        board.expect_exact("line refused", timeout=TIMEOUT_S)
        send(board, b"\x03")
        board.expect_exact(PROMPT, timeout=TIMEOUT_S)
        assert __version__ in command(board, "version")


def test_quoting_error_is_explained(consoles):
    for board in consoles:
        assert "no closing quotation" in command(board, 'log-level "debug').lower()
