"""The console's command history: the lines entered, and walking back and forth through them.

`History` keeps at most `limit` lines, oldest first, never the same line twice in a row and
never an empty one (the line discipline does not hand it lines typed while `hidden`, such as
passwords). `older(draft)` and `newer()` walk through it like the up and down arrows: the
first step back keeps the line being typed (`draft`) so that walking forward past the newest
line gives it back. `rewind()` ends a walk (a line was entered or abandoned).
"""

from __future__ import annotations

from collections import deque

HISTORY_LINES = 100


class History:
    """The lines entered on one console, and where a walk through them stands."""

    def __init__(self, limit: int = HISTORY_LINES) -> None:
        self._lines: deque[str] = deque(maxlen=limit)
        self._position = 0  # index into _lines; len(_lines): not walking
        self._draft = ""

    @property
    def lines(self) -> tuple[str, ...]:
        """The remembered lines, oldest first."""
        return tuple(self._lines)

    def add(self, line: str) -> None:
        """Remember an entered line (unless empty or the same as the newest); ends a walk."""
        if line.strip() and (not self._lines or self._lines[-1] != line):
            self._lines.append(line)
        self.rewind()

    def older(self, draft: str) -> str | None:
        """The line before the one shown, None at the oldest; `draft` is the line being typed,
        kept when the walk starts."""
        if self._position == 0:
            return None
        if self._position == len(self._lines):
            self._draft = draft
        self._position -= 1
        return self._lines[self._position]

    def newer(self) -> str | None:
        """The line after the one shown (the draft after the newest), None when not walking."""
        if self._position >= len(self._lines):
            return None
        self._position += 1
        if self._position == len(self._lines):
            draft, self._draft = self._draft, ""
            return draft
        return self._lines[self._position]

    def rewind(self) -> None:
        """End a walk: the next `older` starts from the newest line again."""
        self._position = len(self._lines)
        self._draft = ""

    def clear(self) -> None:
        """Forget every line (a technician logged out)."""
        self._lines.clear()
        self.rewind()
