"""The console's line discipline, sans-IO: bytes typed on the UART in, echo and line events out.

`LineDiscipline.receive(data)` takes bytes; `next_event()` then hands out, in the order they
happen, `Echo` bytes to send back to the terminal, `LineEntered` with a finished line,
`LineRefused` when a finished line cannot be used (too long, not UTF-8 text, line noise), and
`Interrupt` for Ctrl-C, and None once the bytes are used up. It reads no further than the end of
a line before handing that line out, so a caller that changes `hidden` on a line (the console
asking for a password) changes how the very next byte is echoed. `feed(data)` does both at once.
It never raises on input and holds at most `max_line` bytes of line plus a few bytes of escape
sequence, beyond the bytes received and not yet asked for.

While `hidden` is set (a password being typed) nothing typed is echoed, nor erased on the
screen: only Enter's line ending and Ctrl-C's `^C` are.

Editing: printable text is echoed; backspace or DEL erases one character; Ctrl-U erases the line;
Ctrl-C abandons it; CR, LF or CRLF (counted once) ends it. ANSI escape sequences (arrow and
function keys) are swallowed whole. A NUL (how a UART reports a BREAK), a stray control byte or
invalid UTF-8 inside a line marks the line as noise: it is refused when it ends, never executed.
"""

from __future__ import annotations

import codecs
import enum
from collections import deque
from dataclasses import dataclass

MAX_LINE = 512
MAX_ESCAPE = 32

_BACKSPACE = 0x08
_DEL = 0x7F
_CTRL_C = 0x03
_CTRL_U = 0x15
_CR = 0x0D
_LF = 0x0A
_ESC = 0x1B
_NUL = 0x00
_TAB = 0x09
_QUIET_CONTROLS = frozenset({0x04, 0x07, _TAB})  # Ctrl-D, BEL, Tab: harmless, ignored

_ERASE = b"\b \b"


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
    """Ctrl-C: the line being typed is abandoned (and a running command should stop)."""


Event = Echo | LineEntered | LineRefused | Interrupt


class _Escape(enum.Enum):
    NONE = enum.auto()
    START = enum.auto()  # after ESC
    CSI = enum.auto()  # ESC [ ... final byte
    SS3 = enum.auto()  # ESC O x
    STRING = enum.auto()  # ESC ] / P / X / ^ / _ ... until BEL or ESC \


class LineDiscipline:
    """One terminal line being typed; see the module docstring for the rules."""

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self.max_line = max_line
        self.hidden = False
        self._input = bytearray()
        self._ready: deque[Event] = deque()
        self._line = bytearray()
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._partial = bytearray()  # bytes of an unfinished UTF-8 character
        self._overflow = False
        self._noise = False
        self._after_cr = False
        self._escape = _Escape.NONE
        self._escape_len = 0

    @property
    def pending(self) -> str:
        """The text typed so far on the current line (for redrawing it after a log line)."""
        return self._line.decode("utf-8")

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
        self._line.clear()
        self._partial.clear()
        self._decoder.reset()
        self._overflow = False
        self._noise = False
        self._escape = _Escape.NONE
        self._escape_len = 0

    def _byte(self, byte: int, echo: bytearray, events: deque[Event]) -> None:
        after_cr, self._after_cr = self._after_cr, False
        if self._escape is not _Escape.NONE:
            if byte >= 0x20 or byte in (_ESC, 0x07):
                self._escape_byte(byte)
                return
            self._escape = _Escape.NONE  # a C0 control aborts the sequence and acts itself
        if byte in (_CR, _LF):
            if byte == _LF and after_cr:
                return
            self._after_cr = byte == _CR
            echo += b"\r\n"
            self._flush(echo, events)
            events.append(self._finish())
        elif byte == _CTRL_C:
            echo += b"^C\r\n"
            self._flush(echo, events)
            self.reset()
            events.append(Interrupt())
        elif byte == _CTRL_U:
            if not self.hidden:
                echo += _ERASE * self._columns()
            self._line.clear()
            self._drop_partial()
            self._overflow = False
            self._noise = False
        elif byte in (_BACKSPACE, _DEL):
            self._erase(echo)
        elif byte == _ESC:
            self._drop_partial()
            self._escape = _Escape.START
            self._escape_len = 0
        elif byte < 0x20:
            if byte not in _QUIET_CONTROLS and (self._line or byte != _NUL):
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
        encoded = bytes(self._partial) + bytes((byte,))
        self._partial.clear()
        if not char.isprintable():
            self._noise = True
            return
        if len(self._line) + len(encoded) > self.max_line:
            self._overflow = True
            return
        self._line += encoded
        if not (self._overflow or self._noise or self.hidden):
            echo += encoded

    def _escape_byte(self, byte: int) -> None:
        self._escape_len += 1
        if self._escape_len > MAX_ESCAPE:
            self._escape = _Escape.NONE
            self._noise = True
            return
        state = self._escape
        if state is _Escape.START:
            if byte == ord("["):
                self._escape = _Escape.CSI
            elif byte == ord("O"):
                self._escape = _Escape.SS3
            elif byte in b"]PX^_":
                self._escape = _Escape.STRING
            else:
                self._escape = _Escape.NONE
        elif state is _Escape.CSI:
            if 0x40 <= byte <= 0x7E:
                self._escape = _Escape.NONE
            elif not 0x20 <= byte <= 0x3F:
                self._escape = _Escape.NONE
                self._noise = True
        elif state is _Escape.SS3 or byte in (0x07, ord("\\")):
            self._escape = _Escape.NONE

    def _erase(self, echo: bytearray) -> None:
        if self._partial:
            self._drop_partial()
            return
        if not self._line:
            return
        end = len(self._line) - 1
        while end > 0 and 0x80 <= self._line[end] < 0xC0:
            end -= 1
        del self._line[end:]
        if not (self._overflow or self._noise or self.hidden):
            echo += _ERASE

    def _finish(self) -> Event:
        overflow, noise = self._overflow, self._noise or bool(self._partial)
        text = self._line.decode("utf-8")
        self.reset()
        if overflow:
            return LineRefused(f"line refused: longer than {self.max_line} bytes")
        if noise:
            return LineRefused("line refused: control bytes or invalid UTF-8 in it (line noise?)")
        return LineEntered(text)

    def _flush(self, echo: bytearray, events: deque[Event]) -> None:
        if echo:
            events.append(Echo(bytes(echo)))
            echo.clear()

    def _drop_partial(self) -> None:
        self._partial.clear()
        self._decoder.reset()

    def _columns(self) -> int:
        return sum(1 for byte in self._line if not 0x80 <= byte < 0xC0)
