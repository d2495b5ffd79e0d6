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
NARROWEST = 8  # characters a column keeps when a table is narrowed to fit


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
    With `columns`, the table fits that width: the last column is narrowed first, then the
    widest of the others, each cell cut with "…" (down to NARROWEST characters a column)."""
    cells = [[str(header) for header in headers]]
    cells.extend([cell_text(value) for value in row] for row in rows)
    widths = [max(len(row[column]) for row in cells) for column in range(len(headers))]
    if columns > 0:
        widths = narrowed(widths, columns)
    lines = []
    for row in cells:
        shown = [fit(text, width) for text, width in zip(row, widths, strict=True)]
        padded = [text.ljust(width) for text, width in zip(shown[:-1], widths, strict=False)]
        lines.append(fit("  ".join([*padded, shown[-1]]).rstrip(), columns))
    return "\n".join(lines)


def narrowed(widths: Sequence[int], columns: int) -> list[int]:
    """Column `widths` made to fit `columns` (with two spaces between columns): the last column
    gives up its excess first, then the widest other column, one character at a time; no
    column goes below NARROWEST (or its own width, if less)."""
    fitted = list(widths)
    excess = sum(fitted) + 2 * (len(fitted) - 1) - columns
    last = len(fitted) - 1
    give = min(excess, max(fitted[last] - NARROWEST, 0))
    fitted[last] -= max(give, 0)
    excess -= max(give, 0)
    while excess > 0:
        widest = max(range(last), key=lambda column: fitted[column], default=None)
        if widest is None or fitted[widest] <= NARROWEST:
            break
        fitted[widest] -= 1
        excess -= 1
    return fitted


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
