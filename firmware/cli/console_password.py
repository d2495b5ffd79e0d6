"""`edgekeeper console-password`: make `[console] password_hash` without the daemon.

On a terminal it asks for the password twice without echo (getpass, on the controlling
terminal); otherwise it reads one line from stdin. It prints the one TOML line to paste into
`[console]`. The password must be a line the console can take: printable text, at least
`MIN_LENGTH` characters, at most `MAX_BYTES` bytes of UTF-8 (the console's line limit).
"""

from __future__ import annotations

import argparse
import getpass
import sys

from firmware.cli.result import CommandResult
from firmware.errors import UsageError

MIN_LENGTH = 8
MAX_BYTES = 512  # firmware.console.line.MAX_LINE: the longest line the console takes


def make_console_password(args: argparse.Namespace) -> CommandResult:
    """Read the password, hash it, and answer the `password_hash = "..."` line."""
    password = _typed_twice() if sys.stdin.isatty() else _first_line()
    _check(password)
    # Deferred: importing the config package loads the loader, off the CLI's fast path.
    from firmware.config.password_hash import PasswordHash

    return CommandResult(f'password_hash = "{PasswordHash.make(password).text()}"')


def _typed_twice() -> str:
    password = getpass.getpass("console password: ")
    if getpass.getpass("again: ") != password:
        raise UsageError("the two passwords differ", hint="run it again")
    return password


def _first_line() -> str:
    line = sys.stdin.readline()
    if not line:
        raise UsageError("no password on stdin", hint="give it as one line")
    return line.removesuffix("\n").removesuffix("\r")


def _check(password: str) -> None:
    if len(password) < MIN_LENGTH:
        raise UsageError(
            f"the password is shorter than {MIN_LENGTH} characters", hint="choose a longer one"
        )
    if not password.isprintable():
        raise UsageError(
            "the password has control characters in it",
            hint="the console takes printable text only",
        )
    if len(password.encode("utf-8")) > MAX_BYTES:
        raise UsageError(
            f"the password is longer than {MAX_BYTES} bytes", hint="the console's line limit"
        )
