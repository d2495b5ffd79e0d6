"""`edgekeeper run` as a process: start-up, sd_notify, SIGTERM, SIGHUP reloads, start-up failures.

Each test starts the daemon on a private config (temp run and data dirs, console "none" or
a pty) with NOTIFY_SOCKET pointing at a datagram socket of the test, so readiness is observed
the way systemd observes it. The daemon is the built binary when EDGEKEEPER_BINARY names it (as
`build.py test` does), else `python -m firmware` from the source tree.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.peers.program import cli_argv, daemon_argv

REPO = Path(__file__).resolve().parents[3]

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 12.0


def command(config: Path, *extra: str) -> list[str]:
    return [*daemon_argv(), "run", "--config", str(config), *extra]


def write_config(
    path: Path, root: Path, *, console: str = "none", level: str = "info", fmt: str = "text"
) -> None:
    path.write_text(
        f'[paths]\ndata_dir = "{root}/data"\nrun_dir = "{root}/run"\n\n'
        f'[logging]\nlevel = "{level}"\nformat = "{fmt}"\n\n'
        f'[console]\ndevice = "{console}"\n'
    )


class DaemonProcess:
    """A daemon child with its stderr collected line by line and its sd_notify messages."""

    def __init__(
        self,
        tmp_path: Path,
        config: Path,
        env: dict[str, str] | None = None,
        argv: list[str] | None = None,
        extra: tuple[str, ...] = (),
    ) -> None:
        self.notify_path = str(tmp_path / f"notify-{time.monotonic_ns()}.sock")
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(self.notify_path)
        self.messages: list[bytes] = []
        self.lines: list[str] = []
        self._changed = threading.Condition()
        child_env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "NOTIFY_SOCKET": self.notify_path,
            **(env or {}),
        }
        child_env.pop("EDGEKEEPER_BOARD", None)
        self.started = time.monotonic()
        argv = argv or command(config, *extra)
        self.proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, env=child_env)
        self._readers = [
            threading.Thread(target=self._read_stderr, daemon=True),
            threading.Thread(target=self._read_notify, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()

    def _read_notify(self) -> None:
        while True:
            try:
                message = self.notify.recv(4096)
            except OSError:
                return
            if not message:
                return
            with self._changed:
                self.messages.append(message)
                self._changed.notify_all()

    def wait_for(self, predicate, timeout: float, what: str) -> None:
        with self._changed:
            if not self._changed.wait_for(predicate, timeout):
                pytest.fail(f"timed out waiting for {what}; log:\n" + "\n".join(self.lines))

    def wait_log(self, text: str, timeout: float = 5.0, after: int = 0) -> None:
        self.wait_for(
            lambda: any(text in line for line in self.lines[after:]), timeout, f"log {text!r}"
        )

    def wait_ready(self) -> float:
        self.wait_for(
            lambda: (
                any(m.startswith(b"READY=1") for m in self.messages) or self.proc.poll() is not None
            ),
            START_TIMEOUT_S,
            "READY=1",
        )
        assert self.proc.poll() is None, "daemon exited:\n" + "\n".join(self.lines)
        return time.monotonic() - self.started

    def status(self, run_dir: Path) -> dict[str, object]:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.settimeout(5)
            client.connect(str(run_dir / "mgmt.sock"))
            client.sendall(
                b"GET /daemon/status?api-version=2022-08-03 HTTP/1.1\r\n"
                b"Host: localhost\r\nConnection: close\r\n\r\n"
            )
            answer = b""
            while chunk := client.recv(65536):
                answer += chunk
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        return json.loads(body)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=STOP_TIMEOUT_S)
        finally:
            self.close()

    def close(self) -> None:
        if self.notify.fileno() < 0:
            return
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._readers[0].join(timeout=5)
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as waker:
            waker.sendto(b"", self.notify_path)
        self._readers[1].join(timeout=5)
        self.notify.close()
        if self.proc.stderr is not None:
            self.proc.stderr.close()


@pytest.fixture
def daemon_dirs(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    config = tmp_path / "config.toml"
    write_config(config, tmp_path)
    yield config, tmp_path


@pytest.fixture
def running(daemon_dirs: tuple[Path, Path], tmp_path: Path) -> Iterator[DaemonProcess]:
    config, _ = daemon_dirs
    daemon = DaemonProcess(tmp_path, config)
    try:
        daemon.wait_ready()
        yield daemon
    finally:
        daemon.close()


def test_ready_then_sigterm_exits_zero_in_time(running: DaemonProcess, tmp_path: Path) -> None:
    status = running.status(tmp_path / "run")
    assert status["state"] == "running"
    assert status["pid"] == running.proc.pid
    names = [s["name"] for s in status["services"]]
    assert "api" in names and "console" not in names
    assert all(s["state"] == "running" for s in status["services"]), status
    assert (tmp_path / "run" / "edgekeeper.lock").read_text() == f"{running.proc.pid}\n"
    began = time.monotonic()
    assert running.stop(signal.SIGTERM) == 0
    assert time.monotonic() - began < STOP_TIMEOUT_S
    assert any(m.startswith(b"STOPPING=1") for m in running.messages)
    assert any("INFO daemon: stopped" in line for line in running.lines)
    assert not (tmp_path / "run" / "mgmt.sock").exists()


def test_sigint_also_stops_cleanly(running: DaemonProcess) -> None:
    assert running.stop(signal.SIGINT) == 0


def test_start_to_ready_is_fast(running: DaemonProcess) -> None:
    elapsed = running.wait_ready()
    print(f"start-to-ready from source: {elapsed:.3f} s")
    assert elapsed < 2.0


def test_watchdog_pings_when_asked(daemon_dirs: tuple[Path, Path], tmp_path: Path) -> None:
    config, _ = daemon_dirs
    daemon = DaemonProcess(tmp_path, config, env={"WATCHDOG_USEC": "200000"})
    try:
        daemon.wait_ready()
        daemon.wait_for(
            lambda: daemon.messages.count(b"WATCHDOG=1") >= 3, 2.0, "three WATCHDOG=1 pings"
        )
        assert daemon.stop() == 0
    finally:
        daemon.close()


def test_no_watchdog_without_usec(running: DaemonProcess) -> None:
    # Nothing should happen: watch for as long as an asked-for watchdog (above) pings 3 times.
    time.sleep(0.3)
    assert b"WATCHDOG=1" not in running.messages


def test_sighup_with_broken_config_keeps_running(
    running: DaemonProcess, daemon_dirs: tuple[Path, Path], tmp_path: Path
) -> None:
    config, _ = daemon_dirs
    config.write_text(
        config.read_text().replace('device = "none"', 'device = "none"\nbaud = "fast"')
        + "\n[bogus_section]\nx = 1\n"
    )
    mark = len(running.lines)
    running.proc.send_signal(signal.SIGHUP)
    running.wait_log("configuration not reloaded", after=mark)
    problems = [line for line in running.lines[mark:] if "configuration problem" in line]
    assert len(problems) >= 2, running.lines[mark:]
    assert any("bogus_section" in line for line in problems)
    assert all(str(config) in line for line in problems)
    assert running.proc.poll() is None
    assert running.status(tmp_path / "run")["state"] == "running"
    assert running.stop() == 0


def test_sighup_with_good_config_reloads(
    running: DaemonProcess, daemon_dirs: tuple[Path, Path], tmp_path: Path
) -> None:
    config, root = daemon_dirs
    write_config(config, root, console="pty", level="debug")
    mark = len(running.lines)
    running.proc.send_signal(signal.SIGHUP)
    running.wait_log("configuration reloaded", after=mark)
    assert any("configuration reloaded log_level=debug" in line for line in running.lines[mark:])
    running.wait_log("DEBUG daemon: services in force", after=mark)
    status = running.status(tmp_path / "run")
    states = {s["name"]: s["state"] for s in status["services"]}
    assert states["console"] == "running", "\n".join(running.lines)
    assert set(states.values()) == {"running"}, states
    assert running.messages.count(b"RELOADING=1\nSTATUS=reloading configuration") == 1
    config.write_text(config.read_text() + 'prompt = "gw1> "\n')
    mark = len(running.lines)
    running.proc.send_signal(signal.SIGHUP)
    running.wait_log("configuration reloaded", after=mark)
    restarted = [line for line in running.lines[mark:] if "restarting service for" in line]
    assert len(restarted) == 1 and restarted[0].endswith("service=console"), restarted
    write_config(config, root, console="none")
    mark = len(running.lines)
    running.proc.send_signal(signal.SIGHUP)
    running.wait_log("configuration reloaded", after=mark)
    names = [s["name"] for s in running.status(tmp_path / "run")["services"]]
    assert "console" not in names and "api" in names
    assert running.stop() == 0


def test_second_instance_fails_naming_the_pid(
    running: DaemonProcess, daemon_dirs: tuple[Path, Path]
) -> None:
    config, _ = daemon_dirs
    second = run_to_exit(command(config))
    assert second.returncode == 1
    assert second.stderr.splitlines() == [second.stderr.strip()], "exactly one line expected"
    assert second.stderr.startswith("error: edgekeeper is already running")
    assert f"pid {running.proc.pid}" in second.stderr
    assert running.proc.poll() is None


def run_to_exit(argv: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("NOTIFY_SOCKET", None)
    env.pop("EDGEKEEPER_BOARD", None)
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=20, check=False)


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    """The one `error:` line a failed start ends with (progress log lines may precede it)."""
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], done.stderr
    assert "Traceback" not in done.stderr
    return errors[0]


def test_missing_config_file(tmp_path: Path) -> None:
    line = one_error_line(run_to_exit(command(tmp_path / "absent.toml")))
    assert str(tmp_path / "absent.toml") in line and "not found" in line


def test_unknown_board(daemon_dirs: tuple[Path, Path]) -> None:
    config, _ = daemon_dirs
    line = one_error_line(run_to_exit(command(config, "--board", "no-such-board")))
    assert "no-such-board" in line


def test_unwritable_data_dir(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("a file where the data dir should be")
    config = tmp_path / "config.toml"
    config.write_text(
        f'[paths]\ndata_dir = "{tmp_path}/blocker/data"\nrun_dir = "{tmp_path}/run"\n'
        '[console]\ndevice = "none"\n'
    )
    line = one_error_line(run_to_exit(command(config)))
    assert f"{tmp_path}/blocker/data" in line and "data_dir" in line


def test_unusable_run_dir(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("a file where the run dir should be")
    config = tmp_path / "config.toml"
    config.write_text(
        f'[paths]\ndata_dir = "{tmp_path}/data"\nrun_dir = "{tmp_path}/blocker/run"\n'
        '[console]\ndevice = "none"\n'
    )
    line = one_error_line(run_to_exit(command(config)))
    assert f"cannot create run_dir {tmp_path}/blocker/run" in line
    assert "[paths] run_dir" in line


def test_missing_console_device(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    write_config(config, tmp_path, console="/dev/ttyNOPE9")
    line = one_error_line(run_to_exit(command(config)))
    assert "/dev/ttyNOPE9" in line
    assert not (tmp_path / "run" / "mgmt.sock").exists(), "start-up failure must clean up"


def test_stored_state_survives_failed_start(tmp_path: Path) -> None:
    from firmware.store.state import StateStore

    store = StateStore(tmp_path / "data" / "state")
    store.put("agent", {"image": "edge-agent:1.4"})
    config = tmp_path / "config.toml"
    write_config(config, tmp_path, console="/dev/ttyNOPE9")
    one_error_line(run_to_exit(command(config)))
    assert store.get("agent") == {"image": "edge-agent:1.4"}


def test_json_log_format(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    write_config(config, tmp_path, fmt="json")
    daemon = DaemonProcess(tmp_path, config)
    try:
        daemon.wait_ready()
        assert daemon.stop() == 0
    finally:
        daemon.close()
    events = [json.loads(line) for line in daemon.lines]
    assert {"ts", "level", "logger", "msg"} <= set(events[0])
    assert any(e["msg"] == "edgekeeper ready" and e["pid"] == daemon.proc.pid for e in events)


STUCK_DAEMON = '''
import sys
import threading

from firmware.daemon import app
from firmware.daemon.wiring import ServiceEntry, Wiring


class StuckInExecutor:
    """Waits on a blocking call that never returns (a hung device read)."""

    name = "stuck"

    def __init__(self, executor):
        self.executor = executor

    async def prepare(self):
        pass

    async def run(self):
        await self.executor.run(threading.Event().wait)

    def describe(self):
        return {}


class StuckWiring(Wiring):
    def __init__(self, ctx):
        super().__init__(ctx)
        entry = ServiceEntry("stuck", lambda ctx: StuckInExecutor(ctx.executor), ())
        self.catalogue = (*self.catalogue, entry)


class StuckDaemon(app.Daemon):
    def __init__(self, *args):
        super().__init__(*args, wire=StuckWiring)


app.Daemon = StuckDaemon
sys.exit(app.run(sys.argv[1], None))
'''


def test_sigterm_does_not_wait_for_a_hung_blocking_call(
    daemon_dirs: tuple[Path, Path], tmp_path: Path
) -> None:
    config, _ = daemon_dirs
    argv = [sys.executable, "-c", STUCK_DAEMON, str(config)]
    daemon = DaemonProcess(tmp_path, config, argv=argv)
    try:
        daemon.wait_ready()
        began = time.monotonic()
        assert daemon.stop() == 0
        assert time.monotonic() - began < 5
    finally:
        daemon.close()
    assert any("blocking calls still running at exit" in line for line in daemon.lines)


def cli(*words: str) -> subprocess.CompletedProcess[str]:
    return run_to_exit([*cli_argv(), *words])


def test_cli_overrides_survive_reload_and_log_level_changes_live(
    daemon_dirs: tuple[Path, Path], tmp_path: Path
) -> None:
    config, root = daemon_dirs
    daemon = DaemonProcess(tmp_path, config, extra=("--log-format", "json"))
    socket_uri = f"unix://{root}/run/mgmt.sock"
    try:
        daemon.wait_ready()
        write_config(config, root, level="warning", fmt="text")
        mark = len(daemon.lines)
        daemon.proc.send_signal(signal.SIGHUP)
        daemon.wait_for(lambda: len(daemon.lines) > mark, 5, "a log line after SIGHUP")
        changed = cli("log-level", "debug", "--socket", socket_uri)
        assert changed.returncode == 0, changed.stderr
        daemon.wait_log('"log level changed"', after=mark)
        status = cli("status", "--socket", socket_uri)
        assert status.returncode == 0, status.stderr
        assert "running" in status.stdout
        assert daemon.stop() == 0
    finally:
        daemon.close()
    events = [json.loads(line) for line in daemon.lines]
    levels = [e["level"] for e in events]
    assert "warning" in levels
    (change,) = [e for e in events if e["msg"] == "log level changed"]
    assert (change["level"], change["was"], change["to"]) == ("warning", "warning", "debug")
    assert not any(e["msg"] == "configuration reloaded" for e in events), "warning level ignored"
