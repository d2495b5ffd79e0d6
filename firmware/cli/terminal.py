"""The terminal a command runs on: how wide it is, and where streamed text goes at once.

A command's `CommandResult` text is shown when the command ends; a command that runs for a
while (`logs -f`, a `restart` waiting for a module to stop) writes through `Terminal.write`
meanwhile. The CLI builds its terminal from its own stdout (`stdout_terminal`); the console
gives one for its session (its columns, and a writer that never tears the typed line).
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass

DEFAULT_COLUMNS = 80


@dataclass(frozen=True)
class Terminal:
    """The terminal a command runs on: `columns` is its width (0: unknown, nothing is cut to
    fit), and `write` shows streamed text at once (`logs -f` lines, progress lines)."""

    columns: int
    write: Callable[[str], None]


def stdout_terminal() -> Terminal:
    """The CLI's terminal: stdout's width when it is a terminal (0 when it is a pipe or a file,
    so nothing is cut), and a writer that flushes every write."""
    columns = shutil.get_terminal_size((DEFAULT_COLUMNS, 24)).columns if sys.stdout.isatty() else 0

    def write(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    return Terminal(columns, write)
