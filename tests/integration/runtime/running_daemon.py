"""`edgekeeper run` as a child process against the session dockerd, for the runtime tests."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
from pathlib import Path

from firmware.api.client import ApiClient
from tests.peers.program import cli_argv, program_env, spawn_daemon, stop_daemon
from tests.peers.waiting import wait_for_path

REPO = Path(__file__).resolve().parents[3]


def write_config(root: Path, docker_socket: str, agent: str, image: str) -> Path:
    """A config with the agent as a sleeping busybox, no console, no image GC."""
    create_options = {
        "Cmd": ["sleep", "3600"],
        "StopTimeout": 1,
        "HostConfig": {"NetworkMode": "none"},
    }
    config = root / "config.toml"
    config.write_text(
        f'[paths]\ndata_dir = "{root}/data"\nrun_dir = "{root}/run"\n\n'
        '[console]\ndevice = "none"\n\n'
        f'[runtime]\nuri = "unix://{docker_socket}"\n\n'
        f'[agent]\nname = "{agent}"\nimagePullPolicy = "never"\n\n'
        f'[agent.config]\nimage = "{image}"\ncreateOptions = {_toml(create_options)}\n\n'
        "[watchdog]\nmax_retries = 20\n\n"
        "[image_garbage_collection]\nenabled = false\n"
    )
    return config


def _toml(value: object) -> str:
    """An inline TOML value for plain JSON-like data."""
    if isinstance(value, dict):
        return "{ " + ", ".join(f'"{k}" = {_toml(v)}' for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(value)


class DaemonProcess:
    """One `edgekeeper run --config FILE`; its stderr goes to `log`."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.root = config.parent
        self.socket = self.root / "run" / "mgmt.sock"
        self.log = self.root / "daemon.log"
        self.process: subprocess.Popen | None = None

    @property
    def uri(self) -> str:
        return f"unix://{self.socket}"

    def start(self) -> None:
        self.process = spawn_daemon(self.config, self.log)
        wait_for_path(self.socket, timeout_s=30, process=self.process, log=self.log)

    def kill(self) -> None:
        """SIGKILL: no clean-up at all, as a power cut would leave it."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        self.socket.unlink(missing_ok=True)

    def stop(self) -> int:
        return stop_daemon(self.process)

    def client(self) -> ApiClient:
        return ApiClient(self.uri)

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*cli_argv(), "--config", str(self.config), *args],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
            env=program_env(),
        )

    def cli_process(self, *args: str) -> subprocess.Popen:
        """A CLI command left running (e.g. `logs -f`), its stdout a text pipe."""
        return subprocess.Popen(
            [*cli_argv(), "--config", str(self.config), *args],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=program_env(),
        )

    def request(self, method: str, path: str, query=None, body=None):
        return asyncio.run(self.client().request(method, path, query, body))
