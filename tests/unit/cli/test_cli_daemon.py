"""The CLI against a real `edgekeeper run`: status and log-level over the configured socket."""

from __future__ import annotations

import re
import signal
import subprocess
from pathlib import Path

from tests.peers.program import cli_argv, daemon_argv, program_env
from tests.peers.waiting import wait_for_path

REPO = Path(__file__).resolve().parents[3]


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*cli_argv(), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env=program_env(),
    )


def parent_of(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rpartition(")")[2].split()[1])


def test_status_and_log_level_against_a_running_daemon(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        f'[paths]\ndata_dir = "{tmp_path}/data"\nrun_dir = "{tmp_path}/run"\n\n'
        '[console]\ndevice = "none"\n'
    )
    socket_path = tmp_path / "run" / "mgmt.sock"
    log_file = tmp_path / "daemon.log"
    with log_file.open("w") as log_stream:
        daemon = subprocess.Popen(
            [*daemon_argv(), "run", "--config", str(config)],
            cwd=REPO,
            stderr=log_stream,
            text=True,
            env=program_env(),
        )
    try:
        wait_for_path(socket_path, timeout_s=30, process=daemon, log=log_file)
        assert socket_path.stat().st_mode & 0o777 == 0o660

        status = cli("--config", str(config), "status")
        assert status.returncode == 0, status.stderr
        lines = status.stdout.splitlines()
        head = re.fullmatch(r"edgekeeper \S+ on \S+: running, up \d+s, pid (\d+)", lines[0])
        assert head, lines
        # The daemon itself, or its child when a onefile binary's bootstrap runs it.
        assert daemon.pid in (int(head[1]), parent_of(int(head[1])))
        assert re.fullmatch(r"memory: [\d.]+ MiB resident, [\d.]+ MiB anonymous", lines[1])
        assert lines[2].split() == ["SERVICE", "STATE", "RESTARTS", "LAST", "ERROR"]
        assert re.search(r"^api +running +0 +-$", status.stdout, re.MULTILINE)

        level = cli("--socket", f"unix://{socket_path}", "log-level", "debug")
        assert (level.returncode, level.stdout) == (0, "log level: debug\n"), level.stderr
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=30)
    assert daemon.returncode == 0, log_file.read_text()
    assert not socket_path.exists()
    after = cli("--config", str(config), "status")
    assert after.returncode == 1
    assert after.stderr.startswith(f"error: cannot reach the edgekeeper daemon at {socket_path}")
