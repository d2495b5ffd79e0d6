"""Console login, sans-IO: the login dialog, failures in a row, delays, lockout and idle logout.

With `[console] password_hash` set, a console session starts logged out. `LoginDialog` is that
session's side of the login: it takes the lines typed at `login: ` and `Password: `, the outcome
of the password check and the timers' ends, and answers with actions for the session to carry out
(`Show` text, `Check` a password, `Pause` before the next try) and with what happened
(`LoggedIn`, `LoginFailed`, `LockedOut`, `LoginRefused`, `LoggedOut`) for the daemon's log. It
never reads a clock, a port or the hash: the session passes the time (the loop's monotonic
clock) and checks the password in the executor.

`LoginLedger` counts the failures in a row, the delay before the next try and the lockout. The
console service keeps one for its whole life, so a new session (the serial line reconnected)
starts where the last one stopped; a daemon restart starts afresh.

The rules (`LoginRules`, from `[console]`): after a wrong password the console ignores input for
a growing delay (1 s, 2 s, 4 s ... at most 16 s); after `login_attempts` failures in a row it
refuses every login for `lockout`, and the count starts again when the lockout ends; a success
resets the count. A logged-in session without input for `idle_logout` is logged out. With
`read_only_without_login`, a logged-out session has a shell for the commands that change nothing
(`read_only` in the command table), and `login` starts the dialog; without it, the session is
the dialog until someone logs in.

The login name is free text, shown in the log of a successful login to say who it was; there is
one console password. A failed login is logged without the name, since people type their
password there by mistake (util-linux `login` does the same).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field

from firmware.cli.render import duration
from firmware.config.durations import duration_seconds
from firmware.config.schema import Console

FIRST_DELAY_S = 1.0
MAX_DELAY_S = 16.0

LOGIN_PROMPT = "login: "
PASSWORD_PROMPT = "Password: "


@dataclass(frozen=True)
class LoginRules:
    """How the console treats logins (see the module docstring)."""

    attempts: int
    lockout_s: float
    idle_logout_s: float
    read_only_without_login: bool
    first_delay_s: float = FIRST_DELAY_S
    max_delay_s: float = MAX_DELAY_S

    @classmethod
    def from_config(cls, console: Console) -> LoginRules:
        return cls(
            attempts=console.login_attempts,
            lockout_s=duration_seconds(console.lockout, "[console] lockout"),
            idle_logout_s=duration_seconds(console.idle_logout, "[console] idle_logout"),
            read_only_without_login=console.read_only_without_login,
        )


# --- what the dialog asks the session to do ---------------------------------------------------


@dataclass(frozen=True)
class Show:
    """Text for the terminal (lines; the session adds the line endings)."""

    text: str


@dataclass(frozen=True)
class Check:
    """Check `password` against the hash, then call `LoginDialog.checked`."""

    password: str = field(repr=False)


@dataclass(frozen=True)
class Pause:
    """Ignore input for `seconds`, then call `LoginDialog.resumed`."""

    seconds: float


# --- what happened, for the log -----------------------------------------------------------------


@dataclass(frozen=True)
class LoggedIn:
    name: str


@dataclass(frozen=True)
class LoginFailed:
    failures: int
    delay_s: float


@dataclass(frozen=True)
class LockedOut:
    failures: int
    lockout_s: float


@dataclass(frozen=True)
class LoginRefused:
    """A login tried while the console is locked; the password is not checked."""

    locked_for_s: float


@dataclass(frozen=True)
class LoggedOut:
    reason: str  # "logout" or "idle"


Action = Show | Check | Pause | LoggedIn | LoginFailed | LockedOut | LoginRefused | LoggedOut


class LoginLedger:
    """Failures in a row, the delay before the next try, and the lockout; times are monotonic
    seconds given by the caller."""

    def __init__(self, rules: LoginRules) -> None:
        self.rules = rules
        self.failures = 0
        self._retry_at = 0.0
        self._locked_until = 0.0

    def locked_for(self, now: float) -> float:
        """Seconds the lockout still lasts (0: not locked); the count restarts when it ends."""
        if self._locked_until and now >= self._locked_until:
            self._locked_until = 0.0
            self.failures = 0
        return max(self._locked_until - now, 0.0)

    def delay_left(self, now: float) -> float:
        """Seconds until the next try is allowed after the last failure (0: now)."""
        return max(self._retry_at - now, 0.0)

    def failed(self, now: float) -> LoginFailed | LockedOut:
        """Count a wrong password: the delay before the next try, or the lockout it starts."""
        self.locked_for(now)
        self.failures += 1
        if self.failures >= self.rules.attempts:
            self._locked_until = now + self.rules.lockout_s
            return LockedOut(self.failures, self.rules.lockout_s)
        rules = self.rules
        delay = min(rules.first_delay_s * 2 ** (self.failures - 1), rules.max_delay_s)
        self._retry_at = now + delay
        return LoginFailed(self.failures, delay)

    def succeeded(self) -> None:
        """A right password: the count starts again."""
        self.failures = 0
        self._retry_at = 0.0


class Stage(enum.Enum):
    SHELL = "logged out, at the shell"  # read_only_without_login: commands that change nothing
    NAME = "login:"
    PASSWORD = "Password:"  # input not echoed
    CHECKING = "checking the password"  # input ignored
    PAUSED = "pausing after a wrong password"  # input ignored
    LOGGED_IN = "logged in"


_PROMPTS = {
    Stage.NAME: LOGIN_PROMPT,
    Stage.PASSWORD: PASSWORD_PROMPT,
    Stage.CHECKING: "",
    Stage.PAUSED: "",
}


class LoginDialog:
    """One session's login; see the module docstring."""

    def __init__(self, ledger: LoginLedger) -> None:
        self._ledger = ledger
        self._rules = ledger.rules
        self._home = Stage.SHELL if self._rules.read_only_without_login else Stage.NAME
        self.stage = self._home
        self._name = ""

    @property
    def at_shell(self) -> bool:
        """Lines are commands (rather than a name or a password)."""
        return self.stage in (Stage.SHELL, Stage.LOGGED_IN)

    @property
    def logged_in(self) -> bool:
        return self.stage is Stage.LOGGED_IN

    @property
    def prompt(self) -> str | None:
        """The dialog's prompt ("" when input is ignored); None at the shell (its own prompt)."""
        return _PROMPTS.get(self.stage)

    @property
    def hides_input(self) -> bool:
        """Typed text must not be echoed (a password is being typed or checked)."""
        return self.stage in (Stage.PASSWORD, Stage.CHECKING, Stage.PAUSED)

    @property
    def ignores_input(self) -> bool:
        """Typed bytes are dropped (checking the password, or pausing after a wrong one)."""
        return self.stage in (Stage.CHECKING, Stage.PAUSED)

    @property
    def shows_logs(self) -> bool:
        """The daemon's log lines may be shown: logged in, or read-only access without login."""
        return self.logged_in or self._rules.read_only_without_login

    @property
    def idle_after_s(self) -> float | None:
        """Seconds without input after which `idle()` is due, None when no timer is needed."""
        dialog_open = self.stage is Stage.PASSWORD or (
            self.stage is Stage.NAME and self._home is Stage.SHELL
        )
        return self._rules.idle_logout_s if self.logged_in or dialog_open else None

    def start(self, now: float) -> list[Action]:
        """A new session: it waits out the delay a previous session's failure left."""
        left = self._ledger.delay_left(now)
        if left > 0 and self.stage is not Stage.LOGGED_IN:
            self.stage = Stage.PAUSED
            return [Pause(left)]
        return []

    def login(self, now: float) -> list[Action]:
        """`login` typed at the shell."""
        if self.logged_in:
            return [Show("already logged in (logout first)")]
        refused = self._refusal(now)
        if refused:
            return refused
        self.stage = Stage.NAME
        return []

    def logout(self) -> list[Action]:
        """`logout` or `exit` typed at the shell."""
        if not self.logged_in:
            return [Show("not logged in")]
        self.stage = self._home
        return [LoggedOut("logout"), Show("logged out")]

    def entered(self, text: str, now: float) -> list[Action]:
        """A line typed at `login: ` or `Password: `."""
        if self.stage is Stage.NAME:
            name = text.strip()
            if not name:
                return []
            refused = self._refusal(now)
            if refused:
                return refused
            self._name = name
            self.stage = Stage.PASSWORD
            return []
        if self.stage is Stage.PASSWORD:
            refused = self._refusal(now)
            if refused:
                return refused
            self.stage = Stage.CHECKING
            return [Check(text)]
        raise RuntimeError(f"no login line expected while {self.stage.value}")

    def checked(self, right: bool, now: float) -> list[Action]:
        """The outcome of a `Check`."""
        if self.stage is not Stage.CHECKING:
            raise RuntimeError(f"no password check expected while {self.stage.value}")
        if right:
            self._ledger.succeeded()
            self.stage = Stage.LOGGED_IN
            return [LoggedIn(self._name), Show("logged in (logout ends it)")]
        outcome = self._ledger.failed(now)
        if isinstance(outcome, LockedOut):
            self.stage = self._home
            return [
                outcome,
                Show(
                    f"login incorrect\nconsole locked for {duration(outcome.lockout_s)}: "
                    f"{outcome.failures} failed logins in a row"
                ),
            ]
        self.stage = Stage.PAUSED
        return [outcome, Show("login incorrect"), Pause(outcome.delay_s)]

    def resumed(self) -> list[Action]:
        """A `Pause` is over: ask for the name again."""
        if self.stage is Stage.PAUSED:
            self.stage = Stage.NAME
        return []

    def interrupted(self) -> list[Action]:
        """Ctrl-C at `login: ` or `Password: `: the dialog is abandoned."""
        if self.stage in (Stage.NAME, Stage.PASSWORD):
            self.stage = self._home
        return []

    def idle(self) -> list[Action]:
        """`idle_after_s` passed without input."""
        if self.logged_in:
            self.stage = self._home
            return [
                LoggedOut("idle"),
                Show(f"logged out: no input for {duration(self._rules.idle_logout_s)}"),
            ]
        return self.interrupted()

    def _refusal(self, now: float) -> list[Action]:
        locked_for = self._ledger.locked_for(now)
        if not locked_for:
            return []
        self.stage = self._home
        return [
            LoginRefused(locked_for),
            Show(f"console locked: try again in {duration(math.ceil(locked_for))}"),
        ]
