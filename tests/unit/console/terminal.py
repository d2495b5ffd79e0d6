"""A test terminal on the slave side of the console's pty, read on the test's event loop."""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

from firmware.console.port import PTY_FILE


class Terminal:
    """The technician's end: writes keys, collects output, waits for expected bytes."""

    def __init__(self, run_dir: Path) -> None:
        self.path = (run_dir / PTY_FILE).read_text().strip()
        self.fd = os.open(self.path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        self.seen = bytearray()
        self._mark = 0

    def type(self, keys: bytes | str) -> None:
        os.write(self.fd, keys.encode() if isinstance(keys, str) else keys)

    async def expect(self, needle: bytes | str, within: float = 5.0) -> bytes:
        """Wait until `needle` appears after the previous match; return what came before it."""
        needle = needle.encode() if isinstance(needle, str) else needle
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while (found := self.seen.find(needle, self._mark)) < 0:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"{needle!r} not seen; got {bytes(self.seen[self._mark :])!r}")
            await self._read(remaining)
        before = bytes(self.seen[self._mark : found])
        self._mark = found + len(needle)
        return before

    async def quiet(self, seconds: float) -> bytes:
        """Everything that arrives within `seconds`."""
        loop = asyncio.get_running_loop()
        start = len(self.seen)
        deadline = loop.time() + seconds
        while (remaining := deadline - loop.time()) > 0:
            await self._read(remaining)
        return bytes(self.seen[start:])

    async def _read(self, within: float) -> None:
        loop = asyncio.get_running_loop()
        ready = loop.create_future()
        loop.add_reader(self.fd, lambda: ready.done() or ready.set_result(None))
        try:
            await asyncio.wait_for(ready, within)
        except TimeoutError:
            return
        finally:
            loop.remove_reader(self.fd)
        with contextlib.suppress(BlockingIOError):
            self.seen += os.read(self.fd, 65536)

    def close(self) -> None:
        os.close(self.fd)


class Screen:
    """A one-line terminal model for the line discipline's echo: a printable character
    overwrites the cell under the cursor and moves it right, BS moves it left, CR LF starts a
    new line, BEL rings. Any other byte fails the test: the echo uses nothing else."""

    def __init__(self) -> None:
        self.cells: list[str] = []
        self.column = 0
        self.lines: list[str] = []
        self.bells = 0
        self._after_cr = False

    @property
    def text(self) -> str:
        return "".join(self.cells)

    def write(self, data: bytes) -> None:
        for char in data.decode("utf-8"):
            after_cr, self._after_cr = self._after_cr, False
            assert not after_cr or char == "\n", "CR without LF in the echo"
            if char == "\b":
                assert self.column > 0, "BS at the start of the line"
                self.column -= 1
            elif char == "\r":
                self._after_cr = True
            elif char == "\n":
                assert after_cr, "LF without CR in the echo"
                self.new_line()
            elif char == "\x07":
                self.bells += 1
            else:
                assert char.isprintable(), f"{char!r} in the echo"
                assert self.column <= len(self.cells)
                if self.column == len(self.cells):
                    self.cells.append(char)
                else:
                    self.cells[self.column] = char
                self.column += 1

    def new_line(self) -> None:
        self.lines.append(self.text)
        self.cells = []
        self.column = 0

    def shows(self, text: str, cursor: int) -> bool:
        """The line on screen is `text` (followed by blanks at most), the cursor at `cursor`."""
        shown = self.text
        return (
            shown[: len(text)] == text
            and not shown[len(text) :].strip(" ")
            and self.column == cursor
        )
