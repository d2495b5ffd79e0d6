"""Text for people from API answers: aligned tables, durations and sizes, no colours.

The same text goes to a terminal and to a serial console. Tables fit the terminal's width when
it is known: a line too long is cut with "…" (the last column, the free-text one, goes first);
the commands that show one thing (`show NAME`) keep the whole text.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Sequence

EMPTY = "-"
CUT = "…"


def columns_of(args: argparse.Namespace) -> int:
    """The width the command's output should fit (0: unknown, nothing is cut)."""
    columns = getattr(args, "columns", 0)
    return columns if isinstance(columns, int) else 0


def fit(line: str, columns: int) -> str:
    """`line`, cut with "…" to `columns` characters when it is longer (0: never cut)."""
    if columns <= 0 or len(line) <= columns:
        return line
    return line[: max(columns - 1, 0)].rstrip() + CUT


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], columns: int = 0) -> str:
    """Columns aligned on the widest cell, two spaces apart; the last column is not padded.
    With `columns`, each line is cut to fit that width."""
    cells = [[str(header) for header in headers]]
    cells.extend([cell_text(value) for value in row] for row in rows)
    widths = [max(len(row[column]) for row in cells) for column in range(len(headers))]
    lines = []
    for row in cells:
        padded = [text.ljust(width) for text, width in zip(row[:-1], widths, strict=False)]
        lines.append(fit("  ".join([*padded, row[-1]]).rstrip(), columns))
    return "\n".join(lines)


def cell_text(value: object) -> str:
    """A value as one table cell: None and "" show as "-", newlines are flattened."""
    if value is None or value == "":
        return EMPTY
    return " ".join(str(value).split())


def duration(seconds: float) -> str:
    """`3d 4h`, `2h 05m`, `4m 07s`, `12s`: the two largest units."""
    whole = max(int(seconds), 0)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def kib(amount: object) -> str:
    """A size given in KiB, in the unit that reads best: `812 KiB`, `31.4 MiB`, `1.2 GiB`."""
    if not isinstance(amount, int | float):
        return EMPTY
    if amount < 1024:
        return f"{amount:g} KiB"
    if amount < 1024 * 1024:
        return f"{amount / 1024:.1f} MiB"
    return f"{amount / (1024 * 1024):.1f} GiB"
