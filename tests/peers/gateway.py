"""A gateway for black-box tests: `edgekeeper run` (the built binary under `build.py test`, else the
source) against the session's private dockerd, with module containers made from `client_image`
(busybox plus `uds_http`, tests/peers/uds_http.c) as its modules.

The fixture `gateway(**settings)` starts one daemon on a config of its own (extra TOML appended
verbatim) and stops it, its containers and its directories at the end of the test. The security
tests play attackers from its modules; the provisioning tests bring it online against the cloud
peers.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from firmware.api.client import ApiClient
from firmware.errors import EdgekeeperError
from firmware.runtime.spec import MODULE_LABEL
from tests.peers.program import cli_argv, program_env, spawn_daemon, stop_daemon
from tests.peers.waiting import wait_for_path, wait_until

REPO = Path(__file__).resolve().parents[2]
API = "2020-10-10"


class Gateway:
    """One running daemon; `request()` speaks its management API as root on the host would,
    `module_exec()` runs a command inside a module's container (the attacker's seat)."""

    def __init__(self, root: Path, config: Path, agent: str, dockerd) -> None:
        self.root = root
        self.config = config
        self.agent = agent
        self.run_dir = root / "run"
        self.data_dir = root / "data"
        self.dockerd = dockerd
        self.process: subprocess.Popen[str] | None = None

    @property
    def log_path(self) -> Path:
        return self.root / "daemon.log"

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    @property
    def management_socket(self) -> Path:
        return self.run_dir / "mgmt.sock"

    def start(self) -> None:
        """Start the daemon and return once its management API answers (a socket file a killed
        daemon left behind does not count)."""
        self.process = spawn_daemon(self.config, self.log_path)
        wait_for_path(self.management_socket, timeout_s=30, process=self.process, log=self.log_path)
        wait_until(self._answers, timeout_s=30, what=f"the daemon's API (log {self.log_path})")

    def _answers(self) -> bool:
        try:
            self.request("GET", "/daemon/status")
        except EdgekeeperError:
            return False
        return True

    def stop(self) -> int:
        return stop_daemon(self.process)

    def client(self) -> ApiClient:
        return ApiClient(f"unix://{self.management_socket}")

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """The management API's `ApiResponse` (raises the `EdgekeeperError` a 4xx/5xx maps to)."""
        return asyncio.run(self.client().request(method, path, None, body))

    def raw(self, method: str, path: str, body: bytes = b"", socket: Path | None = None) -> bytes:
        """One raw HTTP/1.1 exchange on `socket` (default: management), the whole answer."""
        import socket as sockets

        target = f"{path}{'&' if '?' in path else '?'}api-version={API}"
        head = (
            f"{method} {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        with sockets.socket(sockets.AF_UNIX, sockets.SOCK_STREAM) as conn:
            conn.settimeout(10)
            conn.connect(str(socket or self.management_socket))
            conn.sendall(head + body)
            chunks = []
            while chunk := conn.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks)

    def cli(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*cli_argv(), "--config", str(self.config), *args],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
            input=input,
            env=program_env(),
        )

    def container_of(self, module: str) -> str:
        """The id of `module`'s running container, once it runs."""
        found: list[str] = []

        def running() -> bool:
            listing = self.dockerd.docker(
                "ps", "-q", "--no-trunc", "--filter", f"label={MODULE_LABEL}={module}"
            ).stdout.split()
            found[:] = listing
            return bool(listing)

        wait_until(running, timeout_s=60, what=f"module {module} running")
        return found[0]

    def module_exec(
        self, module: str, *argv: str, timeout: float = 60
    ) -> subprocess.CompletedProcess:
        """`argv` inside `module`'s container (no check of the exit code)."""
        container = self.container_of(module)
        return self.dockerd.docker("exec", container, *argv, check=False, timeout=timeout)

    def workload(
        self, module: str, method: str, target: str, body: object | None = None
    ) -> tuple[int, Any]:
        """A workload API call made by `module` from inside its container, on its own socket:
        the status code and the parsed JSON body (None when empty)."""
        argv = [
            "uds_http",
            "/var/run/iotedge/workload.sock",
            method,
            f"{target}{'&' if '?' in target else '?'}api-version={API}",
        ]
        if body is not None:
            argv.append(json.dumps(body))
        done = self.module_exec(module, *argv)
        status, _, text = done.stdout.partition("\n")
        assert status.strip().isdigit(), f"uds_http failed: {done.stdout!r} {done.stderr!r}"
        return int(status), json.loads(text) if text.strip() else None

    def deploy(self, name: str, image: str, create_options: dict[str, Any] | None = None) -> Any:
        """PUT a module through the management API (`create_options` default: sleep, no net)."""
        options = create_options or {
            "Cmd": ["sleep", "3600"],
            "StopTimeout": 1,
            "HostConfig": {"NetworkMode": "none"},
        }
        spec = {
            "name": name,
            "type": "docker",
            "imagePullPolicy": "never",
            "status": "running",
            "restartPolicy": "always",
            "config": {"settings": {"image": image, "createOptions": options}},
        }
        return self.request("POST", "/modules", spec)


GatewayFactory = Callable[..., Gateway]

SLEEPING_AGENT = {"Cmd": ["sleep", "3600"], "StopTimeout": 1, "HostConfig": {"NetworkMode": "none"}}


def new_gateway(
    parent: Path,
    dockerd,
    image: str,
    *,
    extra_toml: str = "",
    top_toml: str = "",
    agent_options: dict[str, Any] | None = None,
    hostname: str = "gw.local",
    prefix: str = "eksec",
) -> Gateway:
    """A gateway not started yet: its own directory under `parent` with a 0600 config whose
    agent runs `image` (default create options: sleep, no network) on `dockerd`; `top_toml` goes
    before the first table, `extra_toml` after the last."""
    root = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    root.chmod(0o755)
    agent = f"{prefix}agent{uuid.uuid4().hex[:6]}"
    config = root / "config.toml"
    config.write_text(
        f'{top_toml}\nhostname = "{hostname}"\n\n'
        f'[paths]\ndata_dir = "{root}/data"\nrun_dir = "{root}/run"\n\n'
        '[console]\ndevice = "none"\n\n'
        f'[runtime]\nuri = "{dockerd.uri}"\n\n'
        "[image_garbage_collection]\nenabled = false\n\n"
        f'[agent]\nname = "{agent}"\nimagePullPolicy = "never"\n\n'
        f'[agent.config]\nimage = "{image}"\n'
        f"createOptions = {toml_inline(agent_options or SLEEPING_AGENT)}\n\n"
        f"{extra_toml}\n"
    )
    config.chmod(0o600)
    return Gateway(root, config, agent, dockerd)


@pytest.fixture
def gateway(sim_dockerd, client_image) -> Iterator[GatewayFactory]:
    """`gateway(extra_toml="", top_toml="", agent_options=None, hostname="gw.local", start=True)`
    starts a daemon whose agent is a sleeping `client_image` container (`top_toml` goes before the
    first table, for top-level keys; `start=False` only writes the config); all are removed at the
    end of the test."""
    started: list[Gateway] = []

    def start(
        extra_toml: str = "",
        *,
        top_toml: str = "",
        agent_options: dict[str, Any] | None = None,
        hostname: str = "gw.local",
        start: bool = True,
    ) -> Gateway:
        running = new_gateway(
            Path("/tmp"),
            sim_dockerd,
            client_image,
            extra_toml=extra_toml,
            top_toml=top_toml,
            agent_options=agent_options,
            hostname=hostname,
        )
        started.append(running)
        if start:
            running.start()
        return running

    try:
        yield start
    finally:
        for running in started:
            running.stop()
            sim_dockerd.remove_containers(MODULE_LABEL)
            shutil.rmtree(running.root, ignore_errors=True)


def toml_inline(value: object) -> str:
    """An inline TOML value for plain JSON-like data (dicts, lists, strings, numbers, bools)."""
    if isinstance(value, dict):
        return (
            "{ " + ", ".join(f"{json.dumps(k)} = {toml_inline(v)}" for k, v in value.items()) + " }"
        )
    if isinstance(value, list):
        return "[" + ", ".join(toml_inline(v) for v in value) + "]"
    return json.dumps(value)
