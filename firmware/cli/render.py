"""Text for people from API answers: aligned tables, durations and sizes, plain ASCII.

The same text goes to a terminal and to a serial console, so it never depends on the terminal's
width, colours or encoding.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

EMPTY = "-"


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """Columns aligned on the widest cell, two spaces apart; the last column is not padded."""
    cells = [[str(header) for header in headers]]
    cells.extend([cell_text(value) for value in row] for row in rows)
    widths = [max(len(row[column]) for row in cells) for column in range(len(headers))]
    lines = []
    for row in cells:
        padded = [text.ljust(width) for text, width in zip(row[:-1], widths, strict=False)]
        lines.append("  ".join([*padded, row[-1]]).rstrip())
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
