"""The console's login against the real daemon: `edgekeeper run` with its console on a pty and a
`[console] password_hash` made by the real `edgekeeper console-password`, attacked from the
serial line (docs/security.md, docs/console.md "Login").

Each test starts its own daemon (the settings differ, and a lockout must not leak into the next
test) the way tests/hil does, and types on the console's pty like a technician, or an intruder
with a cable, would.
"""

from __future__ import annotations

import os
import select
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.peers.program import cli_argv, daemon_argv, program_env
from tests.peers.sim import BackgroundProcess
from tests.peers.waiting import WaitTimeout, log_tail, wait_until

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "Tr0ub4dor&3-on-site"
PROMPT = "edgekeeper> "
READY_TIMEOUT_S = 30.0


@pytest.fixture(scope="module")
def password_hash() -> str:
    """`[console] password_hash` for PASSWORD, made by the CLI as an installer would."""
    done = subprocess.run(
        [*cli_argv(), "console-password"],
        cwd=REPO,
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        timeout=60,
        env=program_env(),
    )
    assert done.returncode == 0, done.stderr
    line = done.stdout.strip()
    assert line.startswith('password_hash = "scrypt$') and PASSWORD not in line
    return line.split('"')[1]


class Wire:
    """The technician's end of the console's pty: keys in, everything printed kept."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
        self.seen = bytearray()
        self._mark = 0

    def type(self, keys: str) -> None:
        os.write(self.fd, keys.encode())

    def expect(self, needle: str, within: float = 10.0) -> str:
        """Wait for `needle` after the previous match; the text that came before it."""
        wanted = needle.encode()
        deadline = time.monotonic() + within
        while (found := self.seen.find(wanted, self._mark)) < 0:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{needle!r} not seen; got {bytes(self.seen[self._mark :])!r}")
            self._read(remaining)
        before = bytes(self.seen[self._mark : found])
        self._mark = found + len(wanted)
        return before.decode(errors="replace")

    def _read(self, within: float) -> None:
        readable, _, _ = select.select([self.fd], [], [], within)
        if readable:
            self.seen += os.read(self.fd, 65536)

    def close(self) -> None:
        os.close(self.fd)


class ConsoleGateway:
    """`edgekeeper run` on the sim board with a password on its pty console."""

    def __init__(self, root: Path, console_toml: str) -> None:
        self.root = root
        self.config = root / "config.toml"
        self.process = BackgroundProcess(root, "edgekeeper")
        root.mkdir(parents=True)
        self.config.write_text(
            'hostname = "console-sec"\n\n'
            f'[paths]\ndata_dir = "{root}/data"\nrun_dir = "{root}/run"\n\n'
            '[logging]\nlevel = "info"\n\n'
            f'[console]\ndevice = "pty"\n{console_toml}',
            encoding="utf-8",
        )
        self.config.chmod(0o600)  # it holds a secret

    @property
    def log(self) -> str:
        return self.process.log.read_text(errors="replace")

    def start(self) -> Wire:
        argv = [*daemon_argv(), "run", "--config", str(self.config), "--board", "sim"]
        self.process.spawn(argv, env=program_env())
        pty_file = self.root / "run" / "console.pty"

        def console_path() -> str | bool:
            if self.process.exited():
                pytest.fail(f"the daemon exited:\n{log_tail(self.process.log)}", pytrace=False)
            return pty_file.is_file() and pty_file.read_text().strip()

        try:
            path = wait_until(console_path, timeout_s=READY_TIMEOUT_S, what=str(pty_file))
        except WaitTimeout as timeout:
            pytest.fail(f"{timeout}\n{log_tail(self.process.log)}", pytrace=False)
        return Wire(path)

    def stop(self) -> None:
        self.process.stop()


@pytest.fixture
def console(
    tmp_path: Path, password_hash: str
) -> Iterator[Callable[..., tuple[ConsoleGateway, Wire]]]:
    """`console(**settings)`: a daemon whose `[console]` has the password and `settings`, and
    the wire to its console (at its first prompt)."""
    started: list[tuple[ConsoleGateway, Wire]] = []

    def start(**settings: object) -> tuple[ConsoleGateway, Wire]:
        toml = f'password_hash = "{password_hash}"\n' + "".join(
            f"{key} = {_toml(value)}\n" for key, value in settings.items()
        )
        gateway = ConsoleGateway(tmp_path / f"gw{len(started)}", toml)
        wire = gateway.start()
        started.append((gateway, wire))
        wire.type("\r")
        return gateway, wire

    yield start
    for gateway, wire in started:
        wire.close()
        gateway.stop()
    for gateway, wire in started:
        secrets_shown = [s for s in (PASSWORD, password_hash) if s.encode() in wire.seen]
        assert secrets_shown == [], "a secret reached the console"
        secrets_logged = [s for s in (PASSWORD, password_hash) if s in gateway.log]
        assert secrets_logged == [], "a secret reached the daemon's log"


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return f'"{value}"'


def log_in(wire: Wire, password: str = PASSWORD, name: str = "tech") -> None:
    wire.type(f"{name}\r{password}\r")


def test_a_state_changing_command_before_login_is_refused(console) -> None:
    gateway, wire = console(read_only_without_login=True)
    wire.expect("type help; login to change things")
    wire.type("status\r")
    wire.expect("LAST ERROR")  # a read-only command runs without login
    wire.type("log-level debug\r")
    wire.expect("error: log-level changes the gateway: log in first (login)\r\n")
    wire.type("restart edgeAgent\r")
    wire.expect("error: restart changes the gateway: log in first (login)\r\n")
    assert "log level changed" not in gateway.log
    wire.type("login\r")
    wire.expect("login: ")
    log_in(wire)
    wire.expect("logged in (logout ends it)")
    wire.type("log-level debug\r")
    wire.expect("log level: debug")
    wait_until(lambda: "log level changed" in gateway.log, timeout_s=10, what="the change logged")
    wire.type("logout\r")
    wire.expect("logged out\r\n")
    wire.type("log-level info\r")
    wire.expect("error: log-level changes the gateway: log in first (login)\r\n")


def test_a_logged_out_console_runs_nothing_and_shows_no_logs(console) -> None:
    _gateway, wire = console()
    wire.expect("log in to use it\r\nlogin: ")
    wire.type("status\r")  # taken as a login name
    wire.expect("Password: ")
    wire.type("\x03")
    wire.expect("login: ")
    assert "INFO" not in wire.seen.decode(errors="replace").split("log in to use it")[1]


def test_wrong_passwords_wait_longer_each_time_then_lock_even_the_right_one(console) -> None:
    gateway, wire = console(login_attempts=3, lockout="1m")
    wire.expect("login: ")
    pauses = []
    for attempt in (1, 2):
        log_in(wire, f"guess-{attempt}", name="intruder-x")
        wire.expect("login incorrect\r\n")
        failed_at = time.monotonic()
        wire.type(f"tech\r{PASSWORD}\r")  # typed during the pause: thrown away, never checked
        wire.expect("login: ")
        pauses.append(time.monotonic() - failed_at)
    assert pauses[0] >= 0.9 and pauses[1] >= 1.9, pauses
    log_in(wire, "guess-3", name="intruder-x")
    wire.expect("login incorrect\r\nconsole locked for 1m 00s: 3 failed logins in a row\r\n")
    wire.expect("login: ")
    wire.type("tech\r")
    wire.expect("console locked: try again in ")
    wire.expect("login: ")
    # The cable is pulled and plugged in again: still locked.
    wire.close()
    wire = Wire(wire.path)
    wire.type("tech\r")
    wire.expect("console locked: try again in ")
    assert "Password: " not in wire.seen.decode(errors="replace")
    log = gateway.log
    assert log.count("WARNING console: login failed") == 2
    assert "console: locked after failed logins failures=3 lockout_s=60.0" in log
    assert "login refused: locked" in log
    assert "guess-" not in log and "intruder-x" not in log
    assert "console: login name=" not in log  # nobody got in


def test_after_login_commands_work_and_the_password_is_never_shown(console) -> None:
    gateway, wire = console()
    wire.expect("login: ")
    wire.type("tech\r")
    wire.expect("tech\r\nPassword: ")
    wire.type(PASSWORD + "\r")
    assert wire.expect("logged in (logout ends it)\r\n") == "\r\n"  # only the line end echoed
    wire.type("version\r")
    wire.expect("edgekeeper ")
    wire.expect(PROMPT)
    wire.type("log-level warning\r")
    wire.expect("log level: warning")
    assert "INFO console: login name=tech" in gateway.log
    wire.type("exit\r")
    wire.expect("logged out\r\nlogin: ")
    wire.type("log-level info\r")
    wire.expect("Password: ")  # a command typed at login: is only a name


def test_idle_logout(console) -> None:
    gateway, wire = console(idle_logout="2s")
    wire.expect("login: ")
    log_in(wire)
    wire.expect(PROMPT)
    logged_in_at = time.monotonic()
    wire.expect("logged out: no input for 2s\r\nlogin: ", within=10)
    assert time.monotonic() - logged_in_at >= 1.5
    assert "console: logout reason=idle" in gateway.log
