"""The daemon process and its files, attacked through the file system and /proc (docs/security.md).

Each test runs the real `edgekeeper run` (the built program under `build.py test`, else the
source) on a minimal config of its own (no console, an engine socket that does not exist) in a
root made as the other harnesses make theirs: `tempfile.mkdtemp` under /tmp, which is
world-writable but sticky, so an accepted parent.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.peers.program import spawn_daemon
from tests.peers.waiting import wait_for_path, wait_until

REPO = Path(__file__).resolve().parents[2]
NOBODY = 65534
PR_CAPBSET_DROP = 24  # <linux/prctl.h>
CAP_SYS_PTRACE = 19  # <linux/capability.h>
START_TIMEOUT_S = 30


class Root:
    """A private root with `config.toml`, `run/` and `data/` paths (made by the daemon unless a
    test makes them first) and a victim file an attacker would like the daemon to clobber."""

    def __init__(self) -> None:
        self.path = Path(tempfile.mkdtemp(prefix="ekhard", dir="/tmp"))
        self.run_dir = self.path / "run"
        self.data_dir = self.path / "data"
        self.config = self.path / "config.toml"
        self.log = self.path / "daemon.log"
        self.config.write_text(
            f'[paths]\ndata_dir = "{self.data_dir}"\nrun_dir = "{self.run_dir}"\n\n'
            '[console]\ndevice = "none"\n\n'
            f'[runtime]\nuri = "unix://{self.path}/no-engine.sock"\n'
        )
        self.config.chmod(0o600)
        self.victim = self.path / "victim"
        self.victim.write_text("root:$6$not-yours:19000:0:99999:7:::\n")
        self.victim.chmod(0o640)

    def victim_untouched(self) -> bool:
        content = self.victim.read_text() == "root:$6$not-yours:19000:0:99999:7:::\n"
        return content and stat.S_IMODE(self.victim.stat().st_mode) == 0o640

    def start(self, preexec_fn: Callable[[], None] | None = None) -> subprocess.Popen[str]:
        return spawn_daemon(self.config, self.log, preexec_fn=preexec_fn)

    def refusal(self) -> tuple[int, str]:
        """Start the daemon, which must refuse to: its exit code and its one error line."""
        daemon = self.start()
        try:
            code = daemon.wait(timeout=START_TIMEOUT_S)
        finally:
            stop(daemon)
        errors = [line for line in self.log.read_text().splitlines() if line.startswith("error:")]
        assert len(errors) == 1, self.log.read_text()
        return code, errors[0]


def stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def root() -> Iterator[Root]:
    made = Root()
    try:
        yield made
    finally:
        shutil.rmtree(made.path, ignore_errors=True)


@pytest.fixture
def running(root: Root) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """`running(preexec_fn=None)` starts the daemon and waits for its management socket."""
    started: list[subprocess.Popen[str]] = []

    def start(preexec_fn: Callable[[], None] | None = None) -> subprocess.Popen[str]:
        daemon = root.start(preexec_fn)
        started.append(daemon)
        wait_for_path(
            root.run_dir / "mgmt.sock", timeout_s=START_TIMEOUT_S, process=daemon, log=root.log
        )
        return daemon

    try:
        yield start
    finally:
        for daemon in started:
            stop(daemon)


def test_a_world_writable_run_dir_is_refused_at_start(root: Root) -> None:
    root.run_dir.mkdir()
    root.run_dir.chmod(0o777)
    code, line = root.refusal()
    assert code == 1
    assert line == (
        f"error: run_dir {root.run_dir} is writable by group or others (mode 0777) "
        f"(chmod 755 {root.run_dir})"
    )
    assert stat.S_IMODE(root.run_dir.stat().st_mode) == 0o777
    assert list(root.run_dir.iterdir()) == []


def test_a_data_dir_of_another_user_is_refused_at_start(root: Root) -> None:
    root.data_dir.mkdir(mode=0o700)
    os.chown(root.data_dir, NOBODY, NOBODY)
    code, line = root.refusal()
    assert code == 1
    assert line == (
        f"error: data_dir {root.data_dir} is owned by uid {NOBODY}, not by edgekeeper's uid 0 "
        f"(chown 0:0 {root.data_dir}, or set [paths] data_dir elsewhere)"
    )
    assert list(root.data_dir.iterdir()) == []


def test_a_run_dir_in_a_parent_others_can_write_is_refused_at_start(root: Root) -> None:
    root.path.chmod(0o777)  # world-writable, not sticky: anyone could rename run/ away
    code, line = root.refusal()
    assert code == 1
    assert line.startswith(
        f"error: run_dir {root.run_dir} is inside {root.path}, which is writable by group or "
        "others and not sticky (mode 0777)"
    )
    assert not root.run_dir.exists()


def test_a_link_planted_at_the_lock_file_is_refused_and_its_target_untouched(root: Root) -> None:
    root.run_dir.mkdir()
    lock = root.run_dir / "edgekeeper.lock"
    lock.symlink_to(root.victim)
    code, line = root.refusal()
    assert code == 1
    assert line == (
        f"error: {lock} is a symbolic link; refusing to follow it "
        f"(remove it (rm {lock}); edgekeeper creates its own files)"
    )
    assert root.victim_untouched()
    assert lock.is_symlink()


@pytest.mark.parametrize(
    ("planted", "service"),
    [("state/module-identities.json", "identity"), ("keys/edge-ca-root.key", "certs")],
    ids=["state file", "key file"],
)
def test_a_link_planted_at_a_state_or_key_file_is_refused_and_its_target_untouched(
    root: Root, running: Callable[..., subprocess.Popen[str]], planted: str, service: str
) -> None:
    link = root.data_dir / planted
    link.parent.mkdir(parents=True, mode=0o700)
    root.data_dir.chmod(0o700)
    link.symlink_to(root.victim)
    running()
    refused = f'service failed service={service} error="{link} is a symbolic link; refusing'
    wait_until(lambda: refused in root.log.read_text(), timeout_s=30, what="the refusal logged")
    assert root.victim_untouched()
    assert link.is_symlink()


def test_the_daemon_is_not_dumpable_and_writes_no_core(
    root: Root, running: Callable[..., subprocess.Popen[str]]
) -> None:
    """A process of the same user and capabilities, short of CAP_SYS_PTRACE, may open a dumpable
    process's memory (the control shows the probe can) but not the daemon's."""
    daemon = running(preexec_fn=without_ptrace)
    control = subprocess.Popen(["sleep", "60"], preexec_fn=without_ptrace)
    try:
        assert can_open_memory_of(control.pid), "the probe cannot even read a dumpable process"
        assert not can_open_memory_of(daemon.pid)
    finally:
        control.kill()
        control.wait()
    limits = Path(f"/proc/{daemon.pid}/limits").read_text().splitlines()
    assert [line.split()[-3:-1] for line in limits if line.startswith("Max core file size")] == [
        ["0", "0"]
    ]
    assert "edgekeeper ready" in root.log.read_text()
    assert "core_dumps=off dumpable=no" in root.log.read_text()


def without_ptrace() -> None:
    """In a child before exec: drop CAP_SYS_PTRACE from the bounding set, so the program runs as
    root without it (as under systemd's CapabilityBoundingSet=~CAP_SYS_PTRACE)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_CAPBSET_DROP, CAP_SYS_PTRACE, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP, CAP_SYS_PTRACE)")


def can_open_memory_of(pid: int) -> bool:
    probe = subprocess.run(
        [sys.executable, "-c", f"import os; os.close(os.open('/proc/{pid}/mem', os.O_RDONLY))"],
        preexec_fn=without_ptrace,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert probe.returncode == 0 or "PermissionError" in probe.stderr, probe.stderr
    return probe.returncode == 0
