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
