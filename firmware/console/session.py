"""One technician's console session on a port: prompt, line editing, commands and log lines.

`ConsoleSession.serve()` reads the port, feeds the line discipline and runs each entered line as
a task through `run_command(argv)`, so reading goes on while a command works: Ctrl-C cancels it,
lines typed meanwhile wait (a few) and run after it. Output is written with CRLF line endings.

Log lines arrive through `post_log` and never tear a command's output: while output is being
written they wait; while the technician types, the line being typed is cleared, the log line
printed, and the prompt and the partial input redrawn. When nobody reads the port, the output
buffer stays bounded: the oldest waiting log lines are dropped and counted, and echo beyond the
hard limit is dropped; nothing blocks the loop.
"""

from __future__ import annotations

import asyncio
import logging
import shlex
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Protocol

from firmware.console.line import Echo, Interrupt, LineDiscipline, LineEntered, LineRefused
from firmware.console.port import ConsolePort
from firmware.errors import EdgekeeperError

log = logging.getLogger(__name__)

LOG_BACKLOG = 64  # log lines waiting for the port before the oldest is dropped
MAX_LOG_LINE = 1024  # characters of one log record shown on the console
QUEUED_LINES = 8  # lines typed ahead while a command runs
OUTPUT_LIMIT = 16 * 1024  # bytes queued on the port before writers wait
HARD_LIMIT = 64 * 1024  # bytes queued on the port before echo and prompts are dropped
CHUNK = 1024
LOCAL_COMMANDS = frozenset({"exit", "logout"})

CLEAR_LINE = b"\r\x1b[K"


class CommandOutput(Protocol):
    """What a command answers: text to show and its exit code."""

    @property
    def text(self) -> str: ...

    @property
    def exit_code(self) -> int: ...


CommandRunner = Callable[[list[str]], Awaitable[CommandOutput]]


def crlf(text: str) -> bytes:
    """Text with every line ending turned into CRLF, as a terminal wants it."""
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8", "replace")


class ConsoleSession:
    """The console on one open port; see the module docstring."""

    def __init__(
        self,
        port: ConsolePort,
        run_command: CommandRunner,
        *,
        prompt: str = "edgekeeper> ",
        banner: str = "",
        discipline: LineDiscipline | None = None,
    ) -> None:
        self._port = port
        self._run_command = run_command
        self._prompt = prompt.encode()
        self._banner = banner
        self._discipline = discipline or LineDiscipline()
        self._command: asyncio.Task[None] | None = None
        self._closing = False
        self._typed_ahead: deque[LineEntered | LineRefused] = deque()
        self._logs: deque[str] = deque(maxlen=LOG_BACKLOG)
        self._log_ready = asyncio.Event()
        self._output_idle = asyncio.Event()
        self._output_idle.set()
        self.dropped_logs = 0
        self.dropped_bytes = 0

    @property
    def port_description(self) -> str:
        """Which port this session runs on (e.g. "pty /dev/pts/3", "/dev/ttyS0")."""
        return self._port.description

    async def serve(self) -> None:
        """Run the session until the port fails (raises `DeviceError`) or the task is cancelled."""
        pump = asyncio.create_task(self._pump_logs(), name="console-logs")
        try:
            if self._banner:
                self._emit(crlf(self._banner.rstrip("\n") + "\n"))
            self._emit(self._prompt)
            while True:
                data = await self._port.read()
                for event in self._discipline.feed(data):
                    self._on_event(event)
        finally:
            self._closing = True
            self._typed_ahead.clear()
            pump.cancel()
            if self._command is not None:
                self._command.cancel()
            tasks = [task for task in (pump, self._command) if task is not None]
            await asyncio.gather(*tasks, return_exceptions=True)

    def post_log(self, line: str) -> None:
        """Queue one formatted log line for the console (call on the loop's thread)."""
        if len(line) > MAX_LOG_LINE:
            line = line[: MAX_LOG_LINE - 3] + "..."
        if len(self._logs) == self._logs.maxlen:
            self.dropped_logs += 1
        self._logs.append(line)
        self._log_ready.set()

    def _on_event(self, event: Echo | LineEntered | LineRefused | Interrupt) -> None:
        command = self._command
        busy = command is not None
        if isinstance(event, Echo):
            if not busy:
                self._emit(event.data)
        elif isinstance(event, Interrupt):
            self._typed_ahead.clear()
            if command is not None:
                command.cancel()
            else:
                self._emit(self._prompt)
        elif busy:
            if len(self._typed_ahead) < QUEUED_LINES:
                self._typed_ahead.append(event)
        else:
            self._start(event)

    def _start(self, event: LineEntered | LineRefused) -> None:
        if isinstance(event, LineRefused):
            self._emit(crlf(f"error: {event.reason}\n") + self._prompt)
            return
        command = asyncio.create_task(self._run_line(event.text), name="console-command")
        command.add_done_callback(self._command_done)
        self._command = command

    async def _run_line(self, text: str) -> None:
        output = await self._execute(text)
        if output:
            await self._write_output(crlf(output if output.endswith("\n") else output + "\n"))

    def _command_done(self, command: asyncio.Task[None]) -> None:
        # A callback, not a `finally`: a command cancelled before it ever ran must end here too.
        if command.cancelled():
            self._emit(b"^C\r\n")
        elif command.exception() is not None:
            log.error("console command failed", exc_info=command.exception())
        self._output_idle.set()
        if self._command is command:
            self._command = None
        self._next()

    def _next(self) -> None:
        if self._closing:
            return
        while self._typed_ahead:
            event = self._typed_ahead.popleft()
            if isinstance(event, LineRefused):
                self._emit(self._prompt + crlf(f"\nerror: {event.reason}\n"))
                continue
            self._emit(self._prompt + crlf(event.text + "\n"))
            self._start(event)
            return
        self._emit(self._prompt + self._discipline.pending.encode())

    async def _execute(self, text: str) -> str:
        try:
            argv = shlex.split(text)
        except ValueError as error:
            return f"error: cannot read that line: {error} (close the quote or escape it with \\)"
        if not argv or argv[0] in LOCAL_COMMANDS:
            return ""
        try:
            result = await self._run_command(argv)
        except EdgekeeperError as error:
            return f"error: {error.render()}"
        except Exception:
            log.exception("console command %r failed", argv[0])
            return "error: internal error (the daemon log has the details)"
        return result.text

    async def _write_output(self, data: bytes) -> None:
        self._output_idle.clear()
        for start in range(0, len(data), CHUNK):
            await self._port.drain(OUTPUT_LIMIT)
            self._port.write(data[start : start + CHUNK])

    async def _pump_logs(self) -> None:
        while True:
            await self._log_ready.wait()
            self._log_ready.clear()
            while self._logs:
                await self._output_idle.wait()
                await self._port.drain(OUTPUT_LIMIT)
                if not self._output_idle.is_set():
                    continue
                self._write_log_lines()

    def _write_log_lines(self) -> None:
        lines = []
        if self.dropped_logs:
            lines.append(f"[console: {self.dropped_logs} log lines dropped: nobody was reading]")
            self.dropped_logs = 0
        while self._logs:
            lines.append(self._logs.popleft())
        text = crlf("\n".join(lines) + "\n")
        if self._command is not None:
            self._port.write(text)
        else:
            self._port.write(CLEAR_LINE + text + self._prompt + self._discipline.pending.encode())

    def _emit(self, data: bytes) -> None:
        if self._port.backlog > HARD_LIMIT:
            self.dropped_bytes += len(data)
            return
        self._port.write(data)
