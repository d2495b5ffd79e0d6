"""One technician's console session on a port: prompt, line editing, commands and log lines.

`ConsoleSession.serve()` reads the port, feeds the line discipline and runs each entered line as
a task through `run_command(argv)`, so reading goes on while a command works: Ctrl-C cancels it,
lines typed meanwhile wait (a few) and run after it. Output is written with CRLF line endings.

Log lines arrive through `post_log` with their level and never tear a command's output: while
output is being written they wait; while the technician types, the line being typed is cleared,
the log line printed, and the prompt and the partial input redrawn. When nobody reads the port,
the output buffer stays bounded: the oldest waiting log lines are dropped and counted, and echo
beyond the hard limit is dropped; nothing blocks the loop.

With a `ConsoleLogin`, the session carries out its `LoginDialog` (firmware/console/login.py):
it shows `login: ` and `Password: ` (the line discipline hides what is typed there), checks the
password through `check_password` (off the loop), ignores input while it checks and during the
pause after a wrong one (a timer, no waiting task), logs what happened, and logs out after
`idle_logout` without input (one timer, moved on only when it fires). Commands run read-only
while nobody is logged in (`read_only_without_login`), and the daemon's log lines are shown only
to whoever may read them. `login`, `logout` and `exit` are the session's own commands.

Editing, history and completion live in the line discipline (firmware/console/line.py). On Tab
the session asks its `completer` for the words that fit (firmware/console/completion.py) and
hands them back; it reads no further input until they are in (at most COMPLETION_WAIT_S), so
keys typed after Tab land after the completion. A second Tab lists the words in columns, Ctrl-L
clears the screen; both draw the prompt and the line again. The history is forgotten at logout
and never holds what is typed at the login prompts.

Daemon log lines are shown from the session's own level (`[console] log_level`, default
warning), apart from the daemon's. The session's own `log` command says how they are shown;
`log mute` stops them (counting what is held back), `log follow` shows them again and says how
many were muted, `log level LEVEL` changes the level for this session. A line that only repeats
the one before (apart from its time stamp) is counted, not shown: "[console: last log line
repeated N more times]" follows the next different line, or comes after REPEAT_NOTE_S.

Width: with `columns` 0 the session asks the terminal once it is at the shell (at start, or
after a login): save the cursor, move it far right, ask where it is (CSI 6 n), restore it. The
answer (ESC [ row ; column R) comes back as a `CursorReport` among the keys, so nothing typed is
lost; without an answer within WIDTH_WAIT_S the width stays DEFAULT_COLUMNS. Commands get a
`Terminal` (firmware/cli/terminal.py) with that width and a `write` that shows streamed text at
once (never filtered or muted like log lines). Ctrl-C during a command stops waiting for it and
says so, naming the line; lines typed meanwhile are discarded and counted in that message; lines
typed beyond QUEUED_LINES are dropped and counted before the others run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import shlex
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from firmware.cli.commands import LOG_LEVELS
from firmware.cli.terminal import DEFAULT_COLUMNS, Terminal
from firmware.console.completion import OwnWords, layout
from firmware.console.line import (
    ClearScreen,
    CompletionWanted,
    CursorReport,
    Echo,
    Event,
    Interrupt,
    LineDiscipline,
    LineEntered,
    LineRefused,
    ShowCandidates,
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
COMPLETION_WAIT_S = 2.0  # input waits at most this long for a completion
WIDTH_WAIT_S = 0.3  # how long a terminal has to answer the width question
MIN_COLUMNS = 20  # a narrower "width" is a key (Shift-F3 sends ESC [ 1 ; 2 R), not an answer
REPEAT_NOTE_S = 5.0  # how soon a run of repeated log lines is counted on screen
OWN_COMMANDS = frozenset({"login", "logout", "exit"})  # the session's, not the command table's
OWN_WORDS: OwnWords = {
    "login": {},
    "logout": {},
    "exit": {},
    "log": {"mute": {}, "follow": {}, "level": {level: {} for level in LOG_LEVELS}},
}

CLEAR_LINE = b"\r\x1b[K"
CLEAR_SCREEN = b"\x1b[H\x1b[2J"
WIDTH_QUESTION = b"\x1b7\x1b[999C\x1b[6n\x1b8"  # save, far right, where am I?, restore
_TIME_STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z")
LOG_USAGE = "say `log`, `log mute`, `log follow` or `log level LEVEL` (debug, info, warning, error)"


class CommandOutput(Protocol):
    """What a command answers: text to show and its exit code."""

    @property
    def text(self) -> str: ...

    @property
    def exit_code(self) -> int: ...


class CommandRunner(Protocol):
    """Runs one command line on `terminal`; with `read_only`, refuses (raises) a command that
    changes something."""

    def __call__(
        self, argv: list[str], *, read_only: bool, terminal: Terminal
    ) -> Awaitable[CommandOutput]: ...


class Completer(Protocol):
    """Finds the words that may stand for the last word of a line (completion.Completer)."""

    async def candidates(self, before: str) -> Sequence[str]: ...


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
        completer: Completer | None = None,
        columns: int = 0,
        log_level: str = "warning",
        daemon_log_level: Callable[[], str] | None = None,
    ) -> None:
        """`columns` 0: ask the terminal; `log_level`: the lowest level of daemon lines shown
        (`[console] log_level`); `daemon_log_level` gives the daemon's own (for `log`)."""
        self._port = port
        self._run_command = run_command
        self._prompt = prompt.encode()
        self._banner = banner
        self._discipline = discipline or LineDiscipline()
        self._login = login
        self._dialog = login.dialog if login is not None else None
        self._completer = completer
        self._command: asyncio.Task[None] | None = None
        self._command_line = ""
        self._check: asyncio.Task[None] | None = None
        self._completion: asyncio.Task[None] | None = None
        self._pause: asyncio.TimerHandle | None = None
        self._idle: asyncio.TimerHandle | None = None
        self._last_input = 0.0
        self._closing = False
        self._typed_ahead: deque[LineEntered | LineRefused] = deque()
        self._typed_dropped = 0
        self._discarded = 0
        self._cancelling = False  # Ctrl-C asked the running command to stop
        self._said_why = False  # and it wrote something since, saying what that means
        self._columns = columns or DEFAULT_COLUMNS
        self._asks_width = columns == 0
        self._width_due = self._asks_width
        self._width_wait: asyncio.TimerHandle | None = None
        self._logs: deque[str] = deque(maxlen=LOG_BACKLOG)
        self._log_ready = asyncio.Event()
        self._output_idle = asyncio.Event()
        self._output_idle.set()
        self._stream_open = False  # streamed text left the cursor inside a line
        self._log_level = _level(log_level)
        self._daemon_log_level = daemon_log_level
        self._muted = False
        self._last_log = ""
        self._repeats = 0
        self._repeat_note: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self.dropped_logs = 0
        self.dropped_bytes = 0
        self.muted_logs = 0

    @property
    def columns(self) -> int:
        """The terminal's width as the session knows it (asked, configured, or 80)."""
        return self._columns

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
        loop = self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        pump = asyncio.create_task(self._pump_logs(), name="console-logs")
        try:
            if self._banner:
                self._emit(crlf(self._banner.rstrip("\n") + "\n"))
            self._last_input = loop.time()
            if self._dialog is not None:
                self._apply(self._dialog.start(self._last_input))
                self._width_due = self._asks_width and self._dialog.at_shell
            self._show_prompt()
            while True:
                data = await self._port.read()
                self._last_input = loop.time()
                self._discipline.receive(data)
                self._read_events()
        finally:
            self._closing = True
            self._loop = None
            self._typed_ahead.clear()
            for timer in (self._pause, self._idle, self._width_wait, self._repeat_note):
                if timer is not None:
                    timer.cancel()
            pump.cancel()
            running = (pump, self._command, self._check, self._completion)
            tasks = [task for task in running if task is not None]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def post_log(self, line: str, level: int) -> None:
        """Queue one formatted log line of `level` (logging.WARNING...) for the console (call
        on the loop's thread); held back below the session's level, counted while muted or
        while it repeats the line before, dropped while the session may not read logs."""
        if self._dialog is not None and not self._dialog.shows_logs:
            return
        if level < self._log_level:
            return
        if self._muted:
            self.muted_logs += 1
            return
        sameness = _TIME_STAMP.sub("", line, count=1)
        if sameness == self._last_log:
            self._repeats += 1
            if self._repeat_note is None and self._loop is not None:
                self._repeat_note = self._loop.call_later(REPEAT_NOTE_S, self._note_repeats)
            return
        self._note_repeats()
        self._last_log = sameness
        self._queue_log(line)

    def _queue_log(self, line: str) -> None:
        if len(line) > MAX_LOG_LINE:
            line = line[: MAX_LOG_LINE - 3] + "..."
        if len(self._logs) == self._logs.maxlen:
            self.dropped_logs += 1
        self._logs.append(line)
        self._log_ready.set()

    def _note_repeats(self) -> None:
        if self._repeat_note is not None:
            self._repeat_note.cancel()
            self._repeat_note = None
        if self._repeats:
            times = "time" if self._repeats == 1 else "times"
            self._queue_log(f"[console: last log line repeated {self._repeats} more {times}]")
            self._repeats = 0

    def _read_events(self) -> None:
        """Act on the keys received, up to a Tab whose completion is still being looked up."""
        while self._completion is None and (event := self._discipline.next_event()) is not None:
            self._on_event(event)

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
            self._interrupted(event)
        elif isinstance(event, CursorReport):
            self._width_answered(event)
        elif isinstance(event, CompletionWanted | ShowCandidates | ClearScreen):
            if not busy:  # a command's output is on the screen: leave it alone
                self._screen_key(event)
        elif busy:
            if len(self._typed_ahead) < QUEUED_LINES:
                self._typed_ahead.append(event)
            else:
                self._typed_dropped += 1
        else:
            self._start(event)
            if self._command is None:
                self._show_prompt()

    def _interrupted(self, event: Interrupt) -> None:
        command = self._command
        if command is not None:
            self._discarded = len(self._typed_ahead) + self._typed_dropped + event.abandoned
            self._typed_ahead.clear()
            self._typed_dropped = 0
            self._cancelling, self._said_why = True, False
            command.cancel()
            return
        dialog = self._dialog
        if dialog is not None:
            self._apply(dialog.interrupted())
        self._show_prompt()

    def _screen_key(self, event: CompletionWanted | ShowCandidates | ClearScreen) -> None:
        if isinstance(event, ClearScreen):
            self._emit(CLEAR_SCREEN + self._input_line())
        elif isinstance(event, ShowCandidates):
            listing = layout(event.candidates, self._columns)
            self._emit(b"\r\n" + crlf(listing + "\n") + self._input_line())
        elif self._completer is not None and (self._dialog is None or self._dialog.at_shell):
            self._completion = asyncio.create_task(
                self._complete(self._completer, event), name="console-completion"
            )

    async def _complete(self, completer: Completer, wanted: CompletionWanted) -> None:
        try:
            async with asyncio.timeout(COMPLETION_WAIT_S):
                words: Sequence[str] = await completer.candidates(wanted.before)
        except Exception:
            log.debug("console completion of %r failed", wanted.before, exc_info=True)
            words = ()
        self._completion = None
        self._discipline.complete(wanted, words)
        self._read_events()

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
        elif argv and argv[0] == "log":
            self._emit(crlf(self._log_command(argv[1:]) + "\n"))
        elif argv:
            read_only = dialog is not None and not dialog.logged_in
            command = asyncio.create_task(self._run_line(argv, read_only), name="console-command")
            command.add_done_callback(self._command_done)
            self._command = command
            self._command_line = event.text.strip()

    def _own_command(self, word: str) -> None:
        dialog = self._dialog
        if dialog is None:
            if word == "login":
                self._emit(crlf("no login here: [console] password_hash is not set\n"))
            return
        self._apply(dialog.login(self._now()) if word == "login" else dialog.logout())
        if not dialog.at_shell:
            self._typed_ahead.clear()  # typed before the prompt: never a name or a password

    def _log_command(self, words: list[str]) -> str:
        """The session's `log` command: say, mute, follow, or change the level shown."""
        if not words:
            return self._log_state()
        if words == ["mute"]:
            self._note_repeats()
            self._muted = True
            return "console log muted: `log follow` shows daemon lines again"
        if words == ["follow"]:
            muted, self.muted_logs = self.muted_logs, 0
            self._muted = False
            self._last_log = ""
            if not muted:
                return "console log followed: no lines were muted"
            lines = "line was" if muted == 1 else "lines were"
            return f"console log followed: {muted} {lines} muted (`system logs` shows them)"
        if len(words) == 2 and words[0] == "level" and words[1] in LOG_LEVELS:
            self._log_level = _level(words[1])
            return f"console log level for this session: {words[1]}{self._daemon_note()}"
        return f"error: log: {LOG_USAGE}"

    def _log_state(self) -> str:
        shown = f"{logging.getLevelName(self._log_level).lower()} and above"
        if self._muted:
            state = f"muted ({self.muted_logs} lines held back so far), level {shown}"
        else:
            state = f"following daemon lines at {shown}"
        return f"console log: {state}{self._daemon_note()}"

    def _daemon_note(self) -> str:
        if self._daemon_log_level is None:
            return ""
        daemon = self._daemon_log_level()
        if _level(daemon) <= self._log_level:
            return ""
        return f"; the daemon logs only {daemon} and above (`log-level` changes that)"

    async def _run_line(self, argv: list[str], read_only: bool) -> None:
        output = await self._execute(argv, read_only)
        self._close_stream()
        if output:
            await self._write_output(crlf(output if output.endswith("\n") else output + "\n"))

    def _command_done(self, command: asyncio.Task[None]) -> None:
        # A callback, not a `finally`: a command cancelled before it ever ran must end here too.
        if command.cancelled():
            self._close_stream()
            # A command that said itself what stopping it means (restart, stop) is not repeated.
            note = "^C" if self._said_why else f"^C: stopped waiting for `{self._command_line}`"
            if self._discarded:
                lines = "line" if self._discarded == 1 else "lines"
                note += f"; discarded {self._discarded} {lines} typed meanwhile"
            self._emit(crlf(note + "\n"))
        elif command.exception() is not None:
            log.error("console command failed", exc_info=command.exception())
        self._discarded = 0
        self._cancelling = self._said_why = False
        self._output_idle.set()
        if self._command is command:
            self._command = None
        self._next()

    def _next(self) -> None:
        if self._closing:
            return
        if self._typed_dropped:
            self._emit(
                crlf(
                    f"[console: dropped {self._typed_dropped} lines typed during the command: "
                    f"at most {QUEUED_LINES} wait]\n"
                )
            )
            self._typed_dropped = 0
        while self._typed_ahead and self._command is None:
            event = self._typed_ahead.popleft()
            if isinstance(event, LineRefused):
                self._emit(self._prompt + b"\r\n")
            else:
                self._emit(self._prompt + crlf(event.text + "\n"))
            self._start(event)
        if self._command is None:
            self._show_prompt()

    async def _execute(self, argv: list[str], read_only: bool) -> str:
        terminal = Terminal(self._columns, self._stream)
        try:
            result = await self._run_command(argv, read_only=read_only, terminal=terminal)
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
                if isinstance(action, LoggedIn):
                    self._width_due = self._asks_width
                elif isinstance(action, LoggedOut):
                    self._discipline.history.clear()
        dialog = self._dialog
        if dialog is None:
            return
        self._discipline.hidden = dialog.hides_input
        self._discipline.keep_history = dialog.at_shell
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
        self._show_prompt()

    def _resume(self) -> None:
        assert self._dialog is not None
        self._pause = None
        self._discipline.reset()
        self._apply(self._dialog.resumed())
        self._show_prompt()

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
        self._show_prompt()

    def _input_line(self) -> bytes:
        """The prompt and what is typed after it, the cursor in place, as the terminal should
        show them (nothing typed while input is hidden)."""
        dialog = self._dialog
        prompt = None if dialog is None else dialog.prompt
        shown = self._prompt if prompt is None else prompt.encode()
        return shown + self._discipline.redraw()

    def _show_prompt(self) -> None:
        """Show the prompt and the line; then ask for the width, the first time at the shell."""
        self._emit(self._input_line())
        if self._width_due and (self._dialog is None or self._dialog.at_shell):
            self._width_due = False
            self._emit(WIDTH_QUESTION)
            if self._width_wait is not None:
                self._width_wait.cancel()
            self._width_wait = asyncio.get_running_loop().call_later(
                WIDTH_WAIT_S, self._width_unanswered
            )

    def _width_answered(self, report: CursorReport) -> None:
        if self._width_wait is None or report.column < MIN_COLUMNS:
            return  # not asked, or too late, or a key that looks like an answer
        self._width_wait.cancel()
        self._width_wait = None
        self._columns = report.column

    def _width_unanswered(self) -> None:
        self._width_wait = None
        log.debug("console: the terminal did not say its width; %d columns", self._columns)

    def _stream(self, text: str) -> None:
        """A command's streamed text (Terminal.write), shown at once; never muted. Written
        from another thread (a command's work in the executor), it is handed to the loop."""
        loop = self._loop
        if loop is not None and threading.get_ident() != self._loop_thread:
            with contextlib.suppress(RuntimeError):  # the loop is closing: the text goes
                loop.call_soon_threadsafe(self._stream, text)
            return
        data = crlf(text)
        if not data:
            return
        if self._port.backlog > HARD_LIMIT:
            self.dropped_bytes += len(data)
            return
        if self._command is None:
            self._port.write(CLEAR_LINE + data + self._input_line())
            return
        self._port.write(data)
        self._stream_open = not data.endswith(b"\n")
        self._said_why = self._said_why or self._cancelling

    def _close_stream(self) -> None:
        if self._stream_open:
            self._emit(b"\r\n")
            self._stream_open = False

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
            self._close_stream()
            self._port.write(text)
        else:
            self._port.write(CLEAR_LINE + text + self._input_line())

    def _emit(self, data: bytes) -> None:
        if self._port.backlog > HARD_LIMIT:
            self.dropped_bytes += len(data)
            return
        self._port.write(data)


def _level(name: str) -> int:
    """The logging level of a name such as "warning"."""
    return logging.getLevelNamesMapping()[name.upper()]


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
