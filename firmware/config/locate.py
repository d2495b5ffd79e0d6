"""Where each key sits in a TOML text: dotted key -> 1-based line, without any I/O.

`tomllib` parses but forgets positions, so this small scanner reads the same text again and notes
the line of every table header (`[a.b]`, `[[a]]`), every `key = value` (dotted and quoted keys
included) and every key of an inline table. It is run on text `tomllib` has already accepted, so it
only needs to be good enough to place keys, and it never raises: on anything it does not follow it
returns what it has found so far.
"""

from __future__ import annotations

import contextlib

_BARE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_SPACE = " \t"


class _Scanner:
    """A cursor over the text that counts lines as it moves."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.line = 1
        self.found: dict[str, int] = {}

    def peek(self, offset: int = 0) -> str:
        at = self.pos + offset
        return self.text[at] if at < len(self.text) else ""

    def advance(self, count: int = 1) -> None:
        end = min(self.pos + count, len(self.text))
        self.line += self.text.count("\n", self.pos, end)
        self.pos = end

    def skip_space(self, newlines: bool = False) -> None:
        """Skip blanks, and when `newlines` also line breaks and comments."""
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char in _SPACE or (newlines and char in "\r\n"):
                self.advance()
            elif newlines and char == "#":
                self.skip_line()
            else:
                return

    def skip_line(self) -> None:
        end = self.text.find("\n", self.pos)
        self.advance((len(self.text) if end < 0 else end) - self.pos)

    def note(self, parts: tuple[str, ...], line: int) -> None:
        self.found.setdefault(".".join(parts), line)


def key_lines(text: str) -> dict[str, int]:
    """Map each dotted key (and table) in `text` to the line where it first appears."""
    scan = _Scanner(text)
    with contextlib.suppress(IndexError, ValueError):
        _document(scan)
    return scan.found


def _document(scan: _Scanner) -> None:
    table: tuple[str, ...] = ()
    while True:
        scan.skip_space(newlines=True)
        char = scan.peek()
        if not char:
            return
        if char == "[":
            line = scan.line
            double = scan.peek(1) == "["
            scan.advance(2 if double else 1)
            table = _key(scan)
            scan.note(table, line)
            scan.skip_line()
        else:
            _pair(scan, table)
            scan.skip_line()


def _pair(scan: _Scanner, prefix: tuple[str, ...]) -> None:
    """`key = value`, noting the key and, for inline tables, their keys."""
    line = scan.line
    parts = prefix + _key(scan)
    scan.note(parts, line)
    scan.skip_space()
    if scan.peek() != "=":
        raise ValueError("expected '='")
    scan.advance()
    scan.skip_space()
    _value(scan, parts)


def _key(scan: _Scanner) -> tuple[str, ...]:
    parts: list[str] = []
    while True:
        scan.skip_space()
        char = scan.peek()
        if char in ('"', "'"):
            parts.append(_quoted_key(scan, char))
        else:
            start = scan.pos
            while scan.peek() and scan.peek() in _BARE:
                scan.advance()
            if scan.pos == start:
                raise ValueError("expected a key")
            parts.append(scan.text[start : scan.pos])
        scan.skip_space()
        if scan.peek() != ".":
            return tuple(parts)
        scan.advance()


def _quoted_key(scan: _Scanner, quote: str) -> str:
    scan.advance()
    chars: list[str] = []
    while True:
        char = scan.peek()
        if not char or char == "\n":
            raise ValueError("unterminated key")
        if char == quote:
            scan.advance()
            return "".join(chars)
        if quote == '"' and char == "\\":
            chars.append(_escape(scan))
        else:
            chars.append(char)
            scan.advance()


def _escape(scan: _Scanner) -> str:
    code = scan.peek(1)
    simple = {"b": "\b", "t": "\t", "n": "\n", "f": "\f", "r": "\r", '"': '"', "\\": "\\"}
    if code in simple:
        scan.advance(2)
        return simple[code]
    width = {"u": 4, "U": 8}.get(code)
    if width is None:
        raise ValueError("bad escape")
    digits = scan.text[scan.pos + 2 : scan.pos + 2 + width]
    scan.advance(2 + width)
    return chr(int(digits, 16))


def _value(scan: _Scanner, parts: tuple[str, ...]) -> None:
    char = scan.peek()
    if char in ('"', "'"):
        _string(scan, char)
    elif char == "[":
        _array(scan, parts)
    elif char == "{":
        _inline_table(scan, parts)
    else:
        while scan.peek() and scan.peek() not in ",]}#\r\n":
            scan.advance()


def _string(scan: _Scanner, quote: str) -> None:
    if scan.text.startswith(quote * 3, scan.pos):
        end = scan.text.find(quote * 3, scan.pos + 3)
        if end < 0:
            raise ValueError("unterminated string")
        end += 3
        while scan.text.startswith(quote, end):  # up to two quotes may close the content
            end += 1
        scan.advance(end - scan.pos)
        return
    scan.advance()
    while True:
        char = scan.peek()
        if not char or char == "\n":
            raise ValueError("unterminated string")
        if quote == '"' and char == "\\":
            scan.advance(2)
            continue
        scan.advance()
        if char == quote:
            return


def _array(scan: _Scanner, parts: tuple[str, ...]) -> None:
    scan.advance()
    index = 0
    while True:
        scan.skip_space(newlines=True)
        char = scan.peek()
        if not char:
            raise ValueError("unterminated array")
        if char == "]":
            scan.advance()
            return
        if char == ",":
            scan.advance()
            index += 1
            continue
        start = scan.pos
        _value(scan, (*parts, str(index)))
        if scan.pos == start:
            raise ValueError("unexpected character in array")


def _inline_table(scan: _Scanner, parts: tuple[str, ...]) -> None:
    scan.advance()
    while True:
        scan.skip_space(newlines=True)
        char = scan.peek()
        if not char:
            raise ValueError("unterminated inline table")
        if char == "}":
            scan.advance()
            return
        if char == ",":
            scan.advance()
            continue
        _pair(scan, parts)
