"""One technician's console session on a port: prompt, line editing, commands and log lines.

`ConsoleSession.serve()` reads the port, feeds the line discipline and runs each entered line as
a task through `run_command(argv)`, so reading goes on while a command works: Ctrl-C cancels it,
lines typed meanwhile wait (a few) and run after it. Output is written with CRLF line endings.

Log lines arrive through `post_log` and never tear a command's output: while output is being
written they wait; while the technician types, the line being typed is cleared, the log line
printed, and the prompt and the partial input redrawn. When nobody reads the port, the output
buffer stays bounded: the oldest waiting log lines are dropped and counted, and echo beyond the
hard limit is dropped; nothing blocks the loop.

With a `ConsoleLogin`, the session carries out its `LoginDialog` (firmware/console/login.py):
it shows `login: ` and `Password: ` (the line discipline hides what is typed there), checks the
password through `check_password` (off the loop), ignores input while it checks and during the
pause after a wrong one (a timer, no waiting task), logs what happened, and logs out after
`idle_logout` without input (one timer, moved on only when it fires). Commands run read-only
while nobody is logged in (`read_only_without_login`), and the daemon's log lines are shown only
to whoever may read them. `login`, `logout` and `exit` are the session's own commands.
"""

from __future__ import annotations

import asyncio
import logging
import shlex
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from firmware.console.line import (
    Echo,
    Event,
    Interrupt,
    LineDiscipline,
    LineEntered,
    LineRefused,
)
from firmware.console.login import (
    Action,
    Check,
    LockedOut,
    LoggedIn,
    LoggedOut,
    LoginDialog,
    LoginFailed,
    LoginRefused,
    Pause,
    Show,
)
from firmware.console.port import ConsolePort
from firmware.errors import EdgekeeperError
from firmware.logs import fields, get_logger

log = logging.getLogger(__name__)
audit = get_logger("console")

LOG_BACKLOG = 64  # log lines waiting for the port before the oldest is dropped
MAX_LOG_LINE = 1024  # characters of one log record shown on the console
QUEUED_LINES = 8  # lines typed ahead while a command runs
OUTPUT_LIMIT = 16 * 1024  # bytes queued on the port before writers wait
HARD_LIMIT = 64 * 1024  # bytes queued on the port before echo and prompts are dropped
CHUNK = 1024
OWN_COMMANDS = frozenset({"login", "logout", "exit"})  # the session's, not the command table's

CLEAR_LINE = b"\r\x1b[K"


class CommandOutput(Protocol):
    """What a command answers: text to show and its exit code."""

    @property
    def text(self) -> str: ...

    @property
    def exit_code(self) -> int: ...


class CommandRunner(Protocol):
    """Runs one command line; with `read_only`, refuses (raises) a command that changes
    something."""

    def __call__(self, argv: list[str], *, read_only: bool) -> Awaitable[CommandOutput]: ...


@dataclass(frozen=True)
class ConsoleLogin:
    """What a session needs to ask for a login: its dialog, and how to check a password."""

    dialog: LoginDialog
    check_password: Callable[[str], Awaitable[bool]]


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
        login: ConsoleLogin | None = None,
    ) -> None:
        self._port = port
        self._run_command = run_command
        self._prompt = prompt.encode()
        self._banner = banner
        self._discipline = discipline or LineDiscipline()
        self._login = login
        self._dialog = login.dialog if login is not None else None
        self._command: asyncio.Task[None] | None = None
        self._check: asyncio.Task[None] | None = None
        self._pause: asyncio.TimerHandle | None = None
        self._idle: asyncio.TimerHandle | None = None
        self._last_input = 0.0
        self._closing = False
        self._typed_ahead: deque[LineEntered | LineRefused] = deque()
        self._logs: deque[str] = deque(maxlen=LOG_BACKLOG)
        self._log_ready = asyncio.Event()
        self._output_idle = asyncio.Event()
        self._output_idle.set()
        self.dropped_logs = 0
        self.dropped_bytes = 0

    @property
    def login(self) -> ConsoleLogin | None:
        """The login this session asks for (None: no password is set)."""
        return self._login

    @property
    def port_description(self) -> str:
        """Which port this session runs on (e.g. "pty /dev/pts/3", "/dev/ttyS0")."""
        return self._port.description

    async def serve(self) -> None:
        """Run the session until the port fails (raises `DeviceError`) or the task is cancelled."""
        loop = asyncio.get_running_loop()
        pump = asyncio.create_task(self._pump_logs(), name="console-logs")
        try:
            if self._banner:
                self._emit(crlf(self._banner.rstrip("\n") + "\n"))
            self._last_input = loop.time()
            if self._dialog is not None:
                self._apply(self._dialog.start(self._last_input))
            self._emit(self._input_line())
            while True:
                data = await self._port.read()
                self._last_input = loop.time()
                self._discipline.receive(data)
                while (event := self._discipline.next_event()) is not None:
                    self._on_event(event)
        finally:
            self._closing = True
            self._typed_ahead.clear()
            for timer in (self._pause, self._idle):
                if timer is not None:
                    timer.cancel()
            pump.cancel()
            tasks = [task for task in (pump, self._command, self._check) if task is not None]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def post_log(self, line: str) -> None:
        """Queue one formatted log line for the console (call on the loop's thread); dropped
        while the session is logged out and may not read."""
        if self._dialog is not None and not self._dialog.shows_logs:
            return
        if len(line) > MAX_LOG_LINE:
            line = line[: MAX_LOG_LINE - 3] + "..."
        if len(self._logs) == self._logs.maxlen:
            self.dropped_logs += 1
        self._logs.append(line)
        self._log_ready.set()

    def _on_event(self, event: Event) -> None:
        dialog = self._dialog
        if dialog is not None and dialog.ignores_input:
            return
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
                if dialog is not None:
                    self._apply(dialog.interrupted())
                self._emit(self._input_line())
        elif not isinstance(event, LineEntered | LineRefused):
            return
        elif busy:
            if len(self._typed_ahead) < QUEUED_LINES:
                self._typed_ahead.append(event)
        else:
            self._start(event)
            if self._command is None:
                self._emit(self._input_line())

    def _start(self, event: LineEntered | LineRefused) -> None:
        """Answer a line at once, or start its command; the caller shows the next prompt."""
        if isinstance(event, LineRefused):
            self._emit(crlf(f"error: {event.reason}\n"))
            return
        dialog = self._dialog
        if dialog is not None and not dialog.at_shell:
            self._apply(dialog.entered(event.text, self._now()))
            return
        try:
            argv = shlex.split(event.text)
        except ValueError as error:
            self._emit(
                crlf(
                    f"error: cannot read that line: {error} "
                    "(close the quote or escape it with \\)\n"
                )
            )
            return
        if len(argv) == 1 and argv[0] in OWN_COMMANDS:
            self._own_command(argv[0])
        elif argv:
            read_only = dialog is not None and not dialog.logged_in
            command = asyncio.create_task(self._run_line(argv, read_only), name="console-command")
            command.add_done_callback(self._command_done)
            self._command = command

    def _own_command(self, word: str) -> None:
        dialog = self._dialog
        if dialog is None:
            if word == "login":
                self._emit(crlf("no login here: [console] password_hash is not set\n"))
            return
        self._apply(dialog.login(self._now()) if word == "login" else dialog.logout())
        if not dialog.at_shell:
            self._typed_ahead.clear()  # typed before the prompt: never a name or a password

    async def _run_line(self, argv: list[str], read_only: bool) -> None:
        output = await self._execute(argv, read_only)
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
        while self._typed_ahead and self._command is None:
            event = self._typed_ahead.popleft()
            if isinstance(event, LineRefused):
                self._emit(self._prompt + b"\r\n")
            else:
                self._emit(self._prompt + crlf(event.text + "\n"))
            self._start(event)
        if self._command is None:
            self._emit(self._input_line())

    async def _execute(self, argv: list[str], read_only: bool) -> str:
        try:
            result = await self._run_command(argv, read_only=read_only)
        except EdgekeeperError as error:
            return f"error: {error.render()}"
        except Exception:
            log.exception("console command %r failed", argv[0])
            return "error: internal error (the daemon log has the details)"
        return result.text

    # --- login ---------------------------------------------------------------------------------

    def _apply(self, actions: list[Action]) -> None:
        """Carry out what the login dialog asks for, then match echo and timers to its stage."""
        for action in actions:
            if isinstance(action, Show):
                self._emit(crlf(action.text + "\n"))
            elif isinstance(action, Check):
                self._check = asyncio.create_task(
                    self._check_password(action.password), name="console-login"
                )
            elif isinstance(action, Pause):
                self._pause = asyncio.get_running_loop().call_later(action.seconds, self._resume)
            else:
                _audit(action)
        dialog = self._dialog
        if dialog is None:
            return
        self._discipline.hidden = dialog.hides_input
        if dialog.idle_after_s is None:
            if self._idle is not None:
                self._idle.cancel()
                self._idle = None
        elif self._idle is None:
            self._idle = asyncio.get_running_loop().call_at(
                self._last_input + dialog.idle_after_s, self._idle_due
            )

    async def _check_password(self, password: str) -> None:
        assert self._login is not None
        try:
            right = await self._login.check_password(password)
        except Exception:
            log.exception("console password check failed; counted as a wrong password")
            right = False
        self._check = None
        self._apply(self._login.dialog.checked(right, self._now()))
        self._emit(self._input_line())

    def _resume(self) -> None:
        assert self._dialog is not None
        self._pause = None
        self._discipline.reset()
        self._apply(self._dialog.resumed())
        self._emit(self._input_line())

    def _idle_due(self) -> None:
        dialog = self._dialog
        assert dialog is not None
        self._idle = None
        idle_s = dialog.idle_after_s
        if idle_s is None:
            return
        loop = asyncio.get_running_loop()
        due = self._last_input + idle_s
        if self._command is not None:
            due = loop.time() + idle_s  # a command still running counts as activity
        if loop.time() < due:
            self._idle = loop.call_at(due, self._idle_due)
            return
        self._discipline.reset()
        self._emit(CLEAR_LINE)
        self._apply(dialog.idle())
        self._emit(self._input_line())

    def _input_line(self) -> bytes:
        """The prompt and what is typed after it, as the terminal should show them."""
        dialog = self._dialog
        prompt = None if dialog is None else dialog.prompt
        if prompt is None:
            return self._prompt + self._discipline.pending.encode()
        if dialog is not None and dialog.hides_input:
            return prompt.encode()
        return prompt.encode() + self._discipline.pending.encode()

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

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
            self._port.write(CLEAR_LINE + text + self._input_line())

    def _emit(self, data: bytes) -> None:
        if self._port.backlog > HARD_LIMIT:
            self.dropped_bytes += len(data)
            return
        self._port.write(data)


def _audit(happened: Action) -> None:
    """One log line per login event; never the password, and the name only of a success."""
    if isinstance(happened, LoggedIn):
        audit.info("login", extra=fields(name=happened.name))
    elif isinstance(happened, LoginFailed):
        audit.warning(
            "login failed",
            extra=fields(failures=happened.failures, retry_in_s=happened.delay_s),
        )
    elif isinstance(happened, LockedOut):
        audit.warning(
            "locked after failed logins",
            extra=fields(failures=happened.failures, lockout_s=happened.lockout_s),
        )
    elif isinstance(happened, LoginRefused):
        audit.warning(
            "login refused: locked",
            extra=fields(locked_for_s=round(happened.locked_for_s)),
        )
    elif isinstance(happened, LoggedOut):
        audit.info("logout", extra=fields(reason=happened.reason))
