"""`edgekeeper run` with a real dockerd: the agent and a deployed module get their identities,
their own workload sockets and the IOTEDGE_* environment; the agent reaches the management API
through its mounted socket; the CLI shows identities and sockets; a removed module's socket goes;
no shared workload socket is served unless configured.

Runs the built binary when EDGEKEEPER_BINARY names it, else the source.
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import signal
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from firmware.executor import BoundedExecutor
from firmware.identity.modules import MASTER_KEY, derivation_label
from firmware.keys.backend import SignAlgorithm
from firmware.keys.file import FileBackend
from firmware.keys.registry import BackendRegistry
from firmware.keys.service import KeyService
from firmware.runtime.spec import MODULE_LABEL
from tests.peers.program import cli_argv, program_env, spawn_daemon
from tests.peers.waiting import wait_for_path, wait_until

pytestmark = pytest.mark.docker

REPO = Path(__file__).resolve().parents[3]
API = "2020-10-10"


class Daemon:
    """`edgekeeper run` on a config of its own; `start()`/`stop()` may be called again."""

    def __init__(self, root: Path, config: Path, agent: str) -> None:
        self.root = root
        self.config = config
        self.agent = agent
        self.run_dir = root / "run"
        self.process: subprocess.Popen[str] | None = None

    @property
    def log(self) -> str:
        return (self.root / "daemon.log").read_text()

    def start(self) -> None:
        self.process = spawn_daemon(self.config, self.root / "daemon.log")
        wait_for_path(
            self.run_dir / "mgmt.sock",
            timeout_s=30,
            process=self.process,
            log=self.root / "daemon.log",
        )

    def stop(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=30)
        assert self.process.returncode == 0, self.log


@pytest.fixture
def daemon(sim_dockerd, client_image) -> Iterator[Daemon]:
    root = Path(tempfile.mkdtemp(prefix="ekwd", dir="/tmp"))
    agent = f"ekagent{uuid.uuid4().hex[:6]}"
    config = root / "config.toml"
    config.write_text(
        f'hostname = "gw.local"\n\n'
        f'[paths]\ndata_dir = "{root}/data"\nrun_dir = "{root}/run"\n\n'
        '[console]\ndevice = "none"\n\n'
        f'[runtime]\nuri = "{sim_dockerd.uri}"\n\n'
        f'[agent]\nname = "{agent}"\nimagePullPolicy = "never"\n\n'
        f'[agent.config]\nimage = "{client_image}"\n\n'
        '[agent.config.createOptions]\nCmd = ["sleep", "3600"]\nStopTimeout = 1\n\n'
        '[agent.config.createOptions.HostConfig]\nNetworkMode = "none"\n'
    )
    running = Daemon(root, config, agent)
    running.start()
    try:
        yield running
    finally:
        running.stop()
        for name in [agent, *modules_named(sim_dockerd, "ekmod")]:
            sim_dockerd.remove_containers(f"{MODULE_LABEL}={name}")
        shutil.rmtree(root, ignore_errors=True)


def modules_named(sim_dockerd, prefix: str) -> list[str]:
    listing = sim_dockerd.docker(
        "ps", "-a", "--format", "{{.Names}}", "--filter", f"name={prefix}"
    ).stdout
    return listing.split()


def running_container(sim_dockerd, name: str) -> str:
    def find() -> str | None:
        ids = sim_dockerd.docker(
            "ps", "-q", "--filter", f"label={MODULE_LABEL}={name}", "--filter", "status=running"
        ).stdout.split()
        return ids[0] if ids else None

    return wait_until(find, timeout_s=60, what=f"module {name} running")


def call(sim_dockerd, name: str, socket: str, method: str, target: str, body=None):
    """One request from inside the module's container: (status, JSON answer)."""
    result = _exec_client(sim_dockerd, name, socket, method, target, body)
    assert result.returncode == 0, result.stderr
    return _answer(result)


def call_when_served(sim_dockerd, name: str, socket: str, method: str, target: str, body=None):
    """`call`, or None while the daemon does not serve the socket yet (a restart is under way)."""
    result = _exec_client(sim_dockerd, name, socket, method, target, body)
    return _answer(result) if result.returncode == 0 else None


def _exec_client(sim_dockerd, name, socket, method, target, body):
    container = running_container(sim_dockerd, name)
    argv = ["exec", container, "uds_http", socket, method, f"{target}?api-version={API}"]
    if body is not None:
        argv.append(json.dumps(body))
    return sim_dockerd.docker(*argv, check=False)


def _answer(result):
    status, _, text = result.stdout.partition("\n")
    return int(status), json.loads(text) if text.strip() else None


def started_at(sim_dockerd, name: str) -> str:
    container = running_container(sim_dockerd, name)
    return sim_dockerd.docker("inspect", "-f", "{{.State.StartedAt}}", container).stdout.strip()


def cli(daemon: Daemon, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*cli_argv(), "--config", str(daemon.config), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env=program_env(),
    )


WORKLOAD = "/var/run/iotedge/workload.sock"
MGMT = "/var/run/iotedge/mgmt.sock"


def sign_body(data: bytes) -> dict[str, str]:
    return {"keyId": "primary", "algo": "HMACSHA256", "data": base64.b64encode(data).decode()}


def test_daemon_gives_modules_identities_and_sockets(sim_dockerd, daemon: Daemon) -> None:
    agent = daemon.agent
    module = f"ekmod{uuid.uuid4().hex[:6]}"
    container = running_container(sim_dockerd, agent)
    env = sim_dockerd.docker("exec", container, "env").stdout.splitlines()
    assert "IOTEDGE_MODULEID=$edgeAgent" in env  # the agent's identity, as on IoT Edge
    assert f"IOTEDGE_MANAGEMENTURI=unix://{MGMT}" in env
    assert "EdgeDeviceHostName=gw.local" in env
    assert not any(line.startswith("IOTEDGE_GATEWAYHOSTNAME=") for line in env)
    genid = next(line for line in env if line.startswith("IOTEDGE_MODULEGENERATIONID="))
    genid = genid.partition("=")[2]

    # the agent reaches the management API through its socket, and lists the identities
    status, listed = call(sim_dockerd, agent, MGMT, "GET", "/identities")
    assert status == 200, listed
    assert {
        "moduleId": "$edgeAgent",
        "managedBy": "iotedge",
        "generationId": genid,
        "authType": "sas",
    } in (listed["identities"])
    # the agent deploys a module through the management API
    spec = {
        "name": module,
        "type": "docker",
        "imagePullPolicy": "never",
        "status": "running",
        "config": {
            "settings": {
                "image": "edgekeeper-test/workload-client:latest",
                "createOptions": {
                    "Cmd": ["sleep", "3600"],
                    "StopTimeout": 1,
                    "HostConfig": {"NetworkMode": "none"},
                },
            }
        },
    }
    status, created = call(sim_dockerd, agent, MGMT, "POST", "/modules", spec)
    assert status in (200, 201), created
    module_env = sim_dockerd.docker(
        "exec", running_container(sim_dockerd, module), "env"
    ).stdout.splitlines()
    module_genid = next(
        line.partition("=")[2]
        for line in module_env
        if line.startswith("IOTEDGE_MODULEGENERATIONID=")
    )
    assert not any(line.startswith("IOTEDGE_MANAGEMENTURI=") for line in module_env)
    data = b"hub%2Fdevices%2Fdev%2Fmodules%2Fm\n1900000000"
    status, signed = call(
        sim_dockerd,
        module,
        WORKLOAD,
        "POST",
        f"/modules/{module}/genid/{module_genid}/sign",
        sign_body(data),
    )
    assert status == 200, signed
    status, refused = call(
        sim_dockerd,
        module,
        WORKLOAD,
        "POST",
        f"/modules/$edgeAgent/genid/{genid}/sign",
        sign_body(data),
    )
    assert status == 403, refused
    status, bundle = call(sim_dockerd, module, WORKLOAD, "GET", "/trust-bundle")
    assert status == 200
    x509.load_pem_x509_certificates(bundle["certificate"].encode())

    # the shared workload socket is off unless configured ([listen] shared_workload_socket)
    wait_until(lambda: "shared socket off" in daemon.log, timeout_s=30, what="workload ready")
    assert not (daemon.run_dir / "workload.sock").exists()

    listing = cli(daemon, "identity", "list")
    assert listing.returncode == 0, listing.stderr
    assert any(line.split()[:2] == [module, module_genid] for line in listing.stdout.splitlines())
    shown = cli(daemon, "identity", "show", "$edgeAgent")
    assert f"generation: {genid}" in shown.stdout
    missing = cli(daemon, "identity", "show", "ghost")
    assert missing.returncode == 1 and "no module identity 'ghost'" in missing.stderr
    sockets = cli(daemon, "identity", "sockets")
    assert sockets.returncode == 0, sockets.stderr
    assert any(line.split()[:2] == [module, "listening"] for line in sockets.stdout.splitlines())

    # after a daemon restart the adopted containers reach the new sockets without a restart:
    # their socket directory is mounted, not the socket file
    started = {name: started_at(sim_dockerd, name) for name in (agent, module)}
    daemon.stop()
    daemon.start()

    def signs_again():
        return call_when_served(
            sim_dockerd,
            module,
            WORKLOAD,
            "POST",
            f"/modules/{module}/genid/{module_genid}/sign",
            sign_body(data),
        )

    signs = wait_until(signs_again, timeout_s=60, what="the module to reach its socket again")
    assert signs == (200, signed)
    listed = wait_until(
        lambda: call_when_served(sim_dockerd, agent, MGMT, "GET", "/identities"),
        timeout_s=60,
        what="the agent to reach the management socket again",
    )
    assert listed[0] == 200, listed
    assert {name: started_at(sim_dockerd, name) for name in (agent, module)} == started

    # a reload that restarts the workload service: new sockets, same running containers
    daemon.config.write_text(daemon.config.read_text().replace("gw.local", "gw2.local"))
    assert daemon.process is not None
    mark = daemon.log.count("workload API ready")
    daemon.process.send_signal(signal.SIGHUP)
    wait_until(
        lambda: daemon.log.count("workload API ready") > mark,
        timeout_s=60,
        what="the workload service",
    )
    signs = wait_until(signs_again, timeout_s=60, what="the module to sign after the reload")
    assert signs == (200, signed)
    assert {name: started_at(sim_dockerd, name) for name in (agent, module)} == started

    # removing the module removes its socket directory
    socket_dir = daemon.run_dir / "mnt" / module
    assert (socket_dir / "workload.sock").is_socket()
    status, _ = call(sim_dockerd, agent, MGMT, "DELETE", f"/modules/{module}")
    assert status in (200, 204)
    wait_until(
        lambda: not socket_dir.exists(),
        timeout_s=60,
        what="the removed module's socket directory to go",
    )

    # the digest is HMAC-SHA256 with the key derived from the device identity key
    async def verify() -> bytes:
        executor = BoundedExecutor()
        registry = BackendRegistry("file", {"file": lambda: FileBackend(daemon.root / "data/keys")})
        keys = KeyService(registry, executor)
        try:
            child = await keys.derive(
                await keys.load(MASTER_KEY), derivation_label(module, module_genid)
            )
            return await keys.sign(child, SignAlgorithm.HMAC_SHA256, data)
        finally:
            await keys.close()
            executor.shutdown()

    assert base64.b64decode(signed["digest"]) == asyncio.run(verify())
