"""`edgekeeper console-password` and the console password's hash format."""

from __future__ import annotations

import base64
import io
import subprocess
import sys
import time
from pathlib import Path

import pytest

from firmware.cli import console_password, main
from firmware.cli.commands import CONSOLE, commands_for
from firmware.config.password_hash import MAX_MEMORY, PasswordHash
from firmware.console.line import MAX_LINE
from firmware.errors import ConfigError
from tests.peers.program import program_env

REPO = Path(__file__).resolve().parents[3]
PASSWORD = "correct horse battery"
SALT = base64.b64encode(b"s" * 16).decode()
DIGEST = base64.b64encode(b"d" * 32).decode()


class _Tty(io.StringIO):
    """stdin as a terminal (getpass is replaced, so nothing is read from it)."""

    def isatty(self) -> bool:
        return True


def hash_line(stdin: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "firmware", "console-password"],
        cwd=REPO,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env=program_env(),
    )


def test_the_command_prints_a_line_to_paste_that_verifies_the_password() -> None:
    done = hash_line(PASSWORD + "\n")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    line = done.stdout.strip()
    assert line.startswith('password_hash = "scrypt$n=16384,r=8,p=1$') and line.endswith('"')
    assert PASSWORD not in done.stdout
    parsed = PasswordHash.parse(line.split('"')[1])
    assert parsed.verifies(PASSWORD)
    assert not parsed.verifies(PASSWORD + "!")
    assert not parsed.verifies(PASSWORD.upper())


def test_two_hashes_of_one_password_differ_by_their_salt() -> None:
    first, second = PasswordHash.make(PASSWORD), PasswordHash.make(PASSWORD)
    assert first.salt != second.salt and first.text() != second.text()
    assert first.verifies(PASSWORD) and second.verifies(PASSWORD)


@pytest.mark.parametrize(
    ("typed", "problem"),
    [
        ("", "no password on stdin"),
        ("short\n", "shorter than 8 characters"),
        ("tab\there-and-more\n", "control characters"),
        ("x" * (MAX_LINE + 1) + "\n", f"longer than {MAX_LINE} bytes"),
    ],
)
def test_passwords_the_console_could_not_take_are_refused(typed: str, problem: str) -> None:
    done = hash_line(typed)
    assert done.returncode == 2
    assert done.stdout == ""
    assert problem in done.stderr
    assert done.stderr.count("error:") == 1


def test_on_a_terminal_it_asks_twice_without_echo(monkeypatch, capsys) -> None:
    answers = iter([PASSWORD, PASSWORD])
    asked: list[str] = []

    def getpass(prompt: str) -> str:
        asked.append(prompt)
        return next(answers)

    monkeypatch.setattr(console_password.getpass, "getpass", getpass)
    monkeypatch.setattr(sys, "stdin", _Tty())
    assert main.main(["edgekeeper", "console-password"]) == 0
    assert asked == ["console password: ", "again: "]
    out = capsys.readouterr().out
    assert PasswordHash.parse(out.split('"')[1]).verifies(PASSWORD)


def test_two_different_answers_are_refused(monkeypatch, capsys) -> None:
    answers = iter([PASSWORD, PASSWORD + "x"])
    monkeypatch.setattr(console_password.getpass, "getpass", lambda prompt: next(answers))
    monkeypatch.setattr(sys, "stdin", _Tty())
    assert main.main(["edgekeeper", "console-password"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "error: the two passwords differ (run it again)\n"


def test_the_console_does_not_offer_it() -> None:
    assert "console-password" not in [command.name for command in commands_for(CONSOLE)]


def test_the_same_text_typed_composed_or_decomposed_verifies() -> None:
    hashed = PasswordHash.make("caf\u00e9-latte")
    assert hashed.verifies("cafe\u0301-latte")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "not of the form"),
        ("bcrypt$n=16384,r=8,p=1$" + SALT + "$" + DIGEST, "not of the form"),
        ("scrypt$n=16384,r=8$" + SALT + "$" + DIGEST, "n=N,r=R,p=P, each once"),
        ("scrypt$n=16384,r=8,p=1,p=1$" + SALT + "$" + DIGEST, "n=N,r=R,p=P, each once"),
        ("scrypt$n=16384,r=8,p=x$" + SALT + "$" + DIGEST, "whole number"),
        ("scrypt$n=99999999999,r=8,p=1$" + SALT + "$" + DIGEST, "n is out of range"),
        ("scrypt$n=16383,r=8,p=1$" + SALT + "$" + DIGEST, "power of two"),
        ("scrypt$n=1024,r=8,p=1$" + SALT + "$" + DIGEST, "power of two"),
        ("scrypt$n=1048576,r=8,p=1$" + SALT + "$" + DIGEST, "power of two"),
        ("scrypt$n=16384,r=64,p=1$" + SALT + "$" + DIGEST, "r must be"),
        ("scrypt$n=16384,r=8,p=16$" + SALT + "$" + DIGEST, "r must be"),
        ("scrypt$n=65536,r=8,p=1$" + SALT + "$" + DIGEST, "MiB"),
        ("scrypt$n=32768,r=8,p=4$" + SALT + "$" + DIGEST, "times the default work"),
        ("scrypt$n=16384,r=8,p=1$not*base64$" + DIGEST, "salt is not base64"),
        ("scrypt$n=16384,r=8,p=1$" + SALT + "$" + base64.b64encode(b"d").decode(), "digest must"),
    ],
)
def test_a_bad_hash_is_a_config_error_that_never_shows_it(text: str, problem: str) -> None:
    with pytest.raises(ConfigError) as raised:
        PasswordHash.parse(text)
    rendered = raised.value.render()
    assert rendered.startswith("[console] password_hash is not a usable hash: ")
    assert problem in rendered
    assert "edgekeeper console-password" in rendered
    assert SALT not in rendered and DIGEST not in rendered


def test_the_largest_hash_accepted_checks_within_bounds() -> None:
    """The most expensive parameters `parse` lets through still check in well under a second
    and within the memory bound (a bad config cannot stall the console)."""
    heavy = PasswordHash.parse(f"scrypt$n=32768,r=8,p=2${SALT}${DIGEST}")
    assert 128 * heavy.n * heavy.r <= MAX_MEMORY
    began = time.perf_counter()
    assert not heavy.verifies(PASSWORD)
    assert time.perf_counter() - began < 2.0


def test_the_repr_shows_no_salt_or_digest() -> None:
    hashed = PasswordHash.make(PASSWORD)
    assert base64.b64encode(hashed.digest).decode() not in repr(hashed)
    assert repr(hashed) == "PasswordHash(n=16384, r=8, p=1)"


def test_the_password_limit_is_the_console_line_limit() -> None:
    assert console_password.MAX_BYTES == MAX_LINE


def test_it_needs_no_daemon_and_no_config(tmp_path: Path) -> None:
    env = program_env(EDGEKEEPER_CONFIG=str(tmp_path / "missing.toml"))
    done = subprocess.run(
        [sys.executable, "-m", "firmware", "console-password"],
        cwd=REPO,
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        timeout=60,
        env={**env, "EDGEKEEPER_MANAGEMENT_URI": f"unix://{tmp_path}/nothing.sock"},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith('password_hash = "scrypt$')
