"""The console's line discipline, sans-IO: bytes typed on the UART in, echo and line events out.

`LineDiscipline.receive(data)` takes bytes; `next_event()` then hands out, in the order they
happen, `Echo` bytes to send back to the terminal, `LineEntered` with a finished line,
`LineRefused` when a finished line cannot be used (too long, not UTF-8 text, line noise),
`Interrupt` for Ctrl-C, `CompletionWanted` for Tab, `ClearScreen` for Ctrl-L, `ShowCandidates`
after a second Tab, `CursorReport` for a terminal's answer to a cursor position query, and None
once the bytes are used up. It reads no further than each of those events before handing it
out, so a caller that changes `hidden` on a line (the console asking for a password) changes how
the very next byte is echoed, and a caller that answers a completion before reading on sees the
answer land where Tab was pressed. `feed(data)` does both at once. It never raises on input and
holds at most `max_line` bytes of line plus a few bytes of escape sequence, beyond the bytes
received and not yet asked for.

Editing (emacs keys, as readline has them): printable text is inserted at the cursor; Left and
Right (ESC [ D / C, ESC O D / C), Ctrl-Left and Ctrl-Right or ESC b / ESC f by words, Home
(ESC [ H, ESC [ 1~, ESC [ 7~, ESC O H, Ctrl-A) and End (ESC [ F, ESC [ 4~, ESC [ 8~, ESC O F,
Ctrl-E) move it; backspace or DEL erases the character before it, Delete (ESC [ 3~) the one
under it; Ctrl-K kills to the end of the line, Ctrl-U to its start, Ctrl-W the word before the
cursor; Ctrl-C abandons the line; CR, LF or CRLF (counted once) ends it. Up and Down (ESC [ A /
B, ESC O A / B) walk through the `history` of entered lines. Other escape sequences (function
keys) are swallowed whole. The echo redraws what an edit changed and puts the cursor back with
backspaces, counting one terminal column per character; a line longer than the terminal is wide
wraps, and the cursor is not moved back across the wrap.

Completion: Tab hands out `CompletionWanted` with the text before the cursor; the caller works
out the words that may stand for the last word of it and gives them to `complete()`, which
inserts their longest common prefix (and a space after a single one), rings the bell when there
is nothing to add, and on a second Tab in a row with several words queues `ShowCandidates` for
the caller to list them and draw the line again (`redraw()`).

While `hidden` is set (a password being typed) nothing typed is echoed, history is neither used
nor added to, and Tab does nothing: only Enter's line ending and Ctrl-C's `^C` are echoed.

A NUL (how a UART reports a BREAK), a stray control byte or invalid UTF-8 inside a line marks the
line as noise: it is refused when it ends, never executed. A line longer than `max_line` bytes
keeps its first bytes on screen and is refused too; Ctrl-U on the whole line, Ctrl-C or a line
from the history start afresh.
"""

from __future__ import annotations

import codecs
import enum
import re
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from firmware.console.history import History

MAX_LINE = 512
MAX_ESCAPE = 32

_BACKSPACE = 0x08
_DEL = 0x7F
_CTRL_C = 0x03
_CR = 0x0D
_LF = 0x0A
_ESC = 0x1B
_BEL = 0x07
_NUL = 0x00
_QUIET_CONTROLS = frozenset({0x04, _BEL})  # Ctrl-D, BEL: harmless, ignored

BELL = b"\x07"
_CURSOR_REPORT = re.compile(rb"\[(\d{1,4});(\d{1,4})R")
_WORD_KEYS = re.compile(rb"\[1;[2-8][CD]")  # Ctrl-, Alt- or Shift-Left/Right (xterm modifiers)


@dataclass(frozen=True)
class Echo:
    """Bytes to write back to the terminal."""

    data: bytes


@dataclass(frozen=True)
class LineEntered:
    """A finished line of text (without its line ending); may be empty."""

    text: str


@dataclass(frozen=True)
class LineRefused:
    """A finished line that is not executed; `reason` is shown to the technician."""

    reason: str


@dataclass(frozen=True)
class Interrupt:
    """Ctrl-C: the line being typed is abandoned (and a running command should stop);
    `abandoned` says whether anything was typed on it."""

    abandoned: bool = False


@dataclass(frozen=True)
class CompletionWanted:
    """Tab: complete the last word of `before` (the line up to the cursor) with `complete()`;
    `listing` is set when Tab came twice in a row (list the words if several fit)."""

    before: str
    listing: bool
    generation: int  # which state of the line this is for; complete() ignores a stale answer


@dataclass(frozen=True)
class ShowCandidates:
    """List these words below the line, then draw the prompt and `redraw()` again."""

    candidates: tuple[str, ...]


@dataclass(frozen=True)
class ClearScreen:
    """Ctrl-L: clear the screen, then draw the prompt and `redraw()`."""


@dataclass(frozen=True)
class CursorReport:
    """The terminal's answer to a cursor position query (CSI 6 n): ESC [ row ; column R."""

    row: int
    column: int


Event = (
    Echo
    | LineEntered
    | LineRefused
    | Interrupt
    | CompletionWanted
    | ShowCandidates
    | ClearScreen
    | CursorReport
)


class _Escape(enum.Enum):
    NONE = enum.auto()
    START = enum.auto()  # after ESC
    CSI = enum.auto()  # ESC [ ... final byte
    SS3 = enum.auto()  # ESC O x
    STRING = enum.auto()  # ESC ] / P / X / ^ / _ ... until BEL or ESC \


class LineDiscipline:
    """One terminal line being typed; see the module docstring for the rules."""

    def __init__(self, max_line: int = MAX_LINE, history: History | None = None) -> None:
        self.max_line = max_line
        self.hidden = False
        self.keep_history = True  # False: entered lines are not remembered (a login name)
        self.history = history if history is not None else History()
        self._input = bytearray()
        self._ready: deque[Event] = deque()
        self._text = ""
        self._cursor = 0
        self._generation = 0
        self._tab_generation = -1
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._partial = bytearray()  # bytes of an unfinished UTF-8 character
        self._overflow = False
        self._noise = False
        self._after_cr = False
        self._escape = _Escape.NONE
        self._sequence = bytearray()  # the escape sequence after ESC, at most MAX_ESCAPE bytes
        self._controls: dict[int, Callable[[bytearray, deque[Event]], None]] = {
            _CTRL_C: self._interrupt,
            0x01: lambda echo, events: self._move(0, echo),  # Ctrl-A
            0x05: lambda echo, events: self._move(len(self._text), echo),  # Ctrl-E
            0x0B: lambda echo, events: self._kill(self._cursor, len(self._text), echo),  # Ctrl-K
            0x15: self._kill_before,  # Ctrl-U
            0x17: lambda echo, events: self._kill(self._word_left(), self._cursor, echo),  # ^W
            0x0C: lambda echo, events: self._event(ClearScreen(), echo, events),  # Ctrl-L
            0x09: self._tab,
            _BACKSPACE: self._backspace,
            _DEL: self._backspace,
        }

    @property
    def pending(self) -> str:
        """The text typed so far on the current line (for redrawing it after a log line)."""
        return self._text

    @property
    def cursor(self) -> int:
        """Where the cursor stands in `pending` (a character index)."""
        return self._cursor

    def redraw(self) -> bytes:
        """The line as the terminal should show it after the prompt, the cursor put back in
        place; nothing while `hidden`."""
        if self.hidden:
            return b""
        return self._text.encode() + b"\b" * (len(self._text) - self._cursor)

    def receive(self, data: bytes) -> None:
        """Take bytes from the terminal; `next_event()` tells what they mean."""
        self._input += data

    def next_event(self) -> Event | None:
        """The next event from the bytes received, None when they are used up."""
        if not self._ready:
            echo = bytearray()
            used = 0
            while used < len(self._input) and not self._ready:
                self._byte(self._input[used], echo, self._ready)
                used += 1
            del self._input[:used]
            if echo:
                self._ready.append(Echo(bytes(echo)))
        return self._ready.popleft() if self._ready else None

    def feed(self, data: bytes) -> list[Event]:
        """Process bytes from the terminal; return all the resulting events in order."""
        self.receive(data)
        events: list[Event] = []
        while (event := self.next_event()) is not None:
            events.append(event)
        return events

    def reset(self) -> None:
        """Forget the current line and any half-received sequence."""
        self._text = ""
        self._cursor = 0
        self._generation += 1
        self._drop_partial()
        self._overflow = False
        self._noise = False
        self._escape = _Escape.NONE
        self._sequence.clear()
        self.history.rewind()

    def complete(self, wanted: CompletionWanted, candidates: Iterable[str]) -> None:
        """Answer `wanted` with the words that may replace the last word of its text (those
        that do not start with it, or hold spaces or control characters, are left out); the
        echo (or `ShowCandidates`) comes out of `next_event()`. An answer for a line changed
        since Tab was pressed is ignored."""
        if wanted.generation != self._generation or self.hidden:
            return
        word = re.split(r"\s", wanted.before)[-1]
        usable = sorted(
            {
                candidate
                for candidate in candidates
                if candidate.startswith(word)
                and candidate.isprintable()
                and not any(char.isspace() for char in candidate)
            }
        )
        addition = _common_prefix(usable)[len(word) :]
        if len(usable) == 1 and not self._text[self._cursor :].startswith(" "):
            addition += " "
        echo = bytearray()
        if addition and self._fits(addition):
            self._replace(self._cursor, self._cursor, addition, echo)
            if len(usable) > 1:
                self._tab_generation = self._generation  # the next Tab lists them
        elif len(usable) > 1 and wanted.listing:
            self._ready.append(ShowCandidates(tuple(usable)))
        elif not (len(usable) == 1 and not addition):
            echo += BELL
        if echo:
            self._ready.append(Echo(bytes(echo)))

    # --- bytes ---------------------------------------------------------------------------------

    def _byte(self, byte: int, echo: bytearray, events: deque[Event]) -> None:
        after_cr, self._after_cr = self._after_cr, False
        if self._escape is not _Escape.NONE:
            if byte >= 0x20 or byte in (_ESC, _BEL):
                self._escape_byte(byte, echo, events)
                return
            self._escape = _Escape.NONE  # a C0 control aborts the sequence and acts itself
        if byte in (_CR, _LF):
            if byte == _LF and after_cr:
                return
            self._after_cr = byte == _CR
            self._enter(echo, events)
        elif byte == _ESC:
            self._drop_partial()
            self._escape = _Escape.START
            self._sequence.clear()
        elif byte in self._controls:
            if byte not in (_BACKSPACE, _DEL, _CTRL_C, 0x15) and self._partial:
                self._drop_partial()
                self._noise = True  # a character cut short by a control key
            self._controls[byte](echo, events)
        elif byte < 0x20:
            if byte not in _QUIET_CONTROLS and (self._text or byte != _NUL):
                self._noise = True
        else:
            self._text_byte(byte, echo)

    def _text_byte(self, byte: int, echo: bytearray) -> None:
        try:
            char = self._decoder.decode(bytes((byte,)))
        except UnicodeDecodeError:
            self._drop_partial()
            self._noise = True
            return
        if not char:
            self._partial.append(byte)
            return
        self._partial.clear()
        if not char.isprintable():
            self._noise = True
            return
        if not self._fits(char):
            self._overflow = True
            return
        self._replace(self._cursor, self._cursor, char, echo)

    def _escape_byte(self, byte: int, echo: bytearray, events: deque[Event]) -> None:
        if len(self._sequence) >= MAX_ESCAPE:
            self._escape = _Escape.NONE
            self._sequence.clear()
            self._noise = True
            return
        self._sequence.append(byte)
        state = self._escape
        if state is _Escape.START:
            self._escape = {ord("["): _Escape.CSI, ord("O"): _Escape.SS3}.get(byte, _Escape.NONE)
            if byte in b"]PX^_":
                self._escape = _Escape.STRING
            elif self._escape is _Escape.NONE:
                self._key(bytes(self._sequence), echo, events)  # ESC b, ESC f
        elif state is _Escape.CSI:
            if 0x40 <= byte <= 0x7E:
                self._escape = _Escape.NONE
                self._key(bytes(self._sequence), echo, events)
            elif not 0x20 <= byte <= 0x3F:
                self._escape = _Escape.NONE
                self._noise = True
        elif state is _Escape.SS3:
            self._escape = _Escape.NONE
            self._key(bytes(self._sequence), echo, events)
        elif byte in (_BEL, ord("\\")):
            self._escape = _Escape.NONE

    def _key(self, sequence: bytes, echo: bytearray, events: deque[Event]) -> None:
        """Act on a finished escape sequence (the bytes after ESC)."""
        report = _CURSOR_REPORT.fullmatch(sequence)
        if report is not None:
            self._event(CursorReport(int(report[1]), int(report[2])), echo, events)
            return
        if _WORD_KEYS.fullmatch(sequence):
            sequence = b"b" if sequence.endswith(b"D") else b"f"
        elif sequence[:1] == b"O":
            sequence = b"[" + sequence[1:]
        action = {
            b"[A": lambda: self._recall(self.history.older(self._text), echo),
            b"[B": lambda: self._recall(self.history.newer(), echo),
            b"[C": lambda: self._move(self._cursor + 1, echo),
            b"[D": lambda: self._move(self._cursor - 1, echo),
            b"[H": lambda: self._move(0, echo),
            b"[1~": lambda: self._move(0, echo),
            b"[7~": lambda: self._move(0, echo),
            b"[F": lambda: self._move(len(self._text), echo),
            b"[4~": lambda: self._move(len(self._text), echo),
            b"[8~": lambda: self._move(len(self._text), echo),
            b"[3~": lambda: self._kill(self._cursor, self._cursor + 1, echo),
            b"b": lambda: self._move(self._word_left(), echo),
            b"f": lambda: self._move(self._word_right(), echo),
        }.get(sequence)
        if action is not None:
            action()

    # --- keys ----------------------------------------------------------------------------------

    def _enter(self, echo: bytearray, events: deque[Event]) -> None:
        self._move(len(self._text), echo)
        echo += b"\r\n"
        self._flush(echo, events)
        events.append(self._finish())

    def _interrupt(self, echo: bytearray, events: deque[Event]) -> None:
        abandoned = bool(self._text or self._partial)
        self._move(len(self._text), echo)
        echo += b"^C\r\n"
        self._flush(echo, events)
        self.reset()
        events.append(Interrupt(abandoned))

    def _kill_before(self, echo: bytearray, events: deque[Event]) -> None:
        whole = self._cursor == len(self._text)
        self._drop_partial()
        self._kill(0, self._cursor, echo)
        if whole:
            self._overflow = False
            self._noise = False

    def _backspace(self, echo: bytearray, events: deque[Event]) -> None:
        if self._partial:
            self._drop_partial()  # the half-typed character goes, the line stays
            return
        self._kill(self._cursor - 1, self._cursor, echo)

    def _tab(self, echo: bytearray, events: deque[Event]) -> None:
        if self.hidden:
            return
        listing = self._tab_generation == self._generation
        self._tab_generation = self._generation
        wanted = CompletionWanted(self._text[: self._cursor], listing, self._generation)
        self._event(wanted, echo, events)

    def _recall(self, line: str | None, echo: bytearray) -> None:
        if line is None or self.hidden:
            return
        self._drop_partial()
        self._replace(0, len(self._text), line, echo)
        self._overflow = False
        self._noise = False

    # --- the line and its echo ---------------------------------------------------------------

    def _move(self, to: int, echo: bytearray) -> None:
        to = max(0, min(to, len(self._text)))
        if to == self._cursor:
            return
        if not self.hidden:
            if to < self._cursor:
                echo += b"\b" * (self._cursor - to)
            else:
                echo += self._text[self._cursor : to].encode()
        self._cursor = to
        self._generation += 1

    def _kill(self, start: int, end: int, echo: bytearray) -> None:
        start, end = max(0, start), min(end, len(self._text))
        if start < end:
            self._replace(start, end, "", echo)

    def _replace(self, start: int, end: int, new: str, echo: bytearray) -> None:
        """Put `new` in place of text[start:end], the cursor after it, and echo the change:
        move to `start`, write `new` and the rest of the line, blank what the line lost, and
        go back to the cursor."""
        self._move(start, echo)
        rest = self._text[end:]
        lost = max(0, (end - start) - len(new))
        self._text = self._text[:start] + new + rest
        self._cursor = start + len(new)
        self._generation += 1
        if not self.hidden:
            echo += (new + rest + " " * lost).encode()
            echo += b"\b" * (len(rest) + lost)

    def _word_left(self) -> int:
        position = self._cursor
        while position > 0 and self._text[position - 1].isspace():
            position -= 1
        while position > 0 and not self._text[position - 1].isspace():
            position -= 1
        return position

    def _word_right(self) -> int:
        position, length = self._cursor, len(self._text)
        while position < length and self._text[position].isspace():
            position += 1
        while position < length and not self._text[position].isspace():
            position += 1
        return position

    def _fits(self, addition: str) -> bool:
        return len(self._text.encode()) + len(addition.encode()) <= self.max_line

    def _finish(self) -> Event:
        overflow, noise = self._overflow, self._noise or bool(self._partial)
        text = self._text
        hidden = self.hidden
        self.reset()
        if overflow:
            return LineRefused(f"line refused: longer than {self.max_line} bytes")
        if noise:
            return LineRefused("line refused: control bytes or invalid UTF-8 in it (line noise?)")
        if self.keep_history and not hidden:
            self.history.add(text)
        return LineEntered(text)

    def _event(self, event: Event, echo: bytearray, events: deque[Event]) -> None:
        self._flush(echo, events)
        events.append(event)

    def _flush(self, echo: bytearray, events: deque[Event]) -> None:
        if echo:
            events.append(Echo(bytes(echo)))
            echo.clear()

    def _drop_partial(self) -> None:
        self._partial.clear()
        self._decoder.reset()


def _common_prefix(words: list[str]) -> str:
    """The longest text every one of `words` starts with ("" for none)."""
    if not words:
        return ""
    first, last = min(words), max(words)
    length = 0
    while length < min(len(first), len(last)) and first[length] == last[length]:
        length += 1
    return first[:length]
