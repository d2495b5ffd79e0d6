"""The daemon's recent log lines, kept in memory for `edgekeeper system logs`.

A `LogRing` is a sink of the daemon's `LogControl`: it keeps the last `size` formatted lines
(the same text the journal gets), so a technician on the console sees recent events without
journalctl. Lines are only as detailed as the current log level.
"""

from __future__ import annotations

from collections import deque


class LogRing:
    """The last `size` log lines."""

    def __init__(self, size: int = 500) -> None:
        self._lines: deque[str] = deque(maxlen=size)

    def __call__(self, line: str) -> None:
        self._lines.append(line.rstrip("\n"))

    def lines(self, count: int | None = None) -> list[str]:
        items = list(self._lines)
        return items if count is None else items[-count:] if count > 0 else []
