"""Issue 10: a SIGHUP that changes the key configuration keeps every module signing.

`edgekeeper run` (the built binary when EDGEKEEPER_BINARY names it, else the source) with a real
dockerd, its agent and one deployed module. Both modules sign without pause on their own workload
sockets (from the host, as root, which their socket lets act as that module) and ask for server
certificates (each one signed by the workload CA key through the key service), while drop-ins in
config.d switch `[keys] default_backend` from file to PKCS#11 (SoftHSM2) to TPM (swtpm), each
followed by a SIGHUP. Every request must succeed, every signature must be the one the device
identity key gives (the key did not change), and afterwards a restarted module and a newly
deployed one sign with it too.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import os
import shutil
import signal
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import pytest

from firmware.api.client import ApiClient
from firmware.errors import EdgekeeperError
from firmware.identity.model import identity_of_module
from firmware.runtime.spec import MODULE_LABEL
from tests.peers.program import daemon_argv, program_env
from tests.peers.waiting import wait_for_path, wait_until_async

pytestmark = [pytest.mark.docker, pytest.mark.softhsm, pytest.mark.swtpm]

REPO = Path(__file__).resolve().parents[3]
DATA = b"hub.example.net%2Fdevices%2Fgw%2Fmodules%2Fm\n1900000000"
PER_PHASE = 100  # signatures each module makes, at least, once each configuration is in force
SWITCH_S = 60.0
# Budgets out of the way: this test is about reloads, not about how much a module may ask.
BUDGETS = (
    "[workload.budgets]\ncertificates_per_module = 100000\ncertificates = 100000\n"
    "key_operations_per_module = 100000\nkey_operations = 100000\n"
)
SLEEPING = {"Cmd": ["sleep", "3600"], "StopTimeout": 1, "HostConfig": {"NetworkMode": "none"}}


@dataclass(frozen=True)
class Outcome:
    """One workload request: the configuration in force when it was sent, and its answer."""

    phase: int
    status: int
    answer: bytes | str


class Gateway:
    """One `edgekeeper run` with its agent; drop-ins and SIGHUP change its configuration."""

    def __init__(self, root: Path, agent: str) -> None:
        self.root = root
        self.agent = agent
        self.config = root / "config.toml"
        self.run_dir = root / "run"
        self.data_dir = root / "data"
        self.log_path = root / "daemon.log"
        self.process: subprocess.Popen[str] | None = None

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def start(self) -> None:
        with self.log_path.open("a") as log:
            self.process = subprocess.Popen(
                [*daemon_argv(), "run", "--config", str(self.config)],
                cwd=REPO,
                stdout=log,
                stderr=log,
                text=True,
                env=program_env(),
            )
        wait_for_path(
            self.run_dir / "mgmt.sock", timeout_s=30, process=self.process, log=self.log_path
        )

    def stop(self) -> int:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=30)

    def reload_with(self, name: str, text: str) -> None:
        """Write drop-in `config.d/<name>` (0600: it may hold a PIN) and send SIGHUP."""
        drop_ins = self.config.parent / "config.d"
        drop_ins.mkdir(mode=0o700, exist_ok=True)
        path = drop_ins / name
        path.write_text(text)
        path.chmod(0o600)
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGHUP)

    def management(self) -> ApiClient:
        return ApiClient(f"unix://{self.run_dir / 'mgmt.sock'}")

    def workload(self, module: str) -> ApiClient:
        return ApiClient(f"unix://{self.run_dir / 'mnt' / module / 'workload.sock'}")

    def master_secret(self) -> bytes:
        """The device identity key as the file backend stores it (a kind line, then the secret)."""
        stored = (self.data_dir / "keys" / "device-identity.key").read_bytes()
        header, _, secret = stored.partition(b"\n")
        assert header == b"hmac-sha256"
        return secret

    def expected_digest(self, module: str, genid: str) -> bytes:
        """What `module` signing DATA must give: its identity's primary key (IoT Edge's
        derivation data) over DATA."""
        label = f"{module_id(self, module)}:{genid}:primary".encode()
        return hmac.digest(hmac.digest(self.master_secret(), label, "sha256"), DATA, "sha256")


@pytest.fixture
def gateway(sim_dockerd, client_image) -> Iterator[Gateway]:
    root = Path(tempfile.mkdtemp(prefix="ekrl", dir="/tmp"))
    root.chmod(0o755)
    running = Gateway(root, f"ekrlagent{uuid.uuid4().hex[:6]}")
    running.config.write_text(
        'hostname = "gw.local"\n\n'
        f'[paths]\ndata_dir = "{root}/data"\nrun_dir = "{root}/run"\n\n'
        '[console]\ndevice = "none"\n\n'
        '[keys]\ndefault_backend = "file"\n\n'
        f'[runtime]\nuri = "{sim_dockerd.uri}"\n\n'
        "[image_garbage_collection]\nenabled = false\n\n"
        f'[agent]\nname = "{running.agent}"\nimagePullPolicy = "never"\n\n'
        f'[agent.config]\nimage = "{client_image}"\n\n'
        '[agent.config.createOptions]\nCmd = ["sleep", "3600"]\nStopTimeout = 1\n\n'
        '[agent.config.createOptions.HostConfig]\nNetworkMode = "none"\n\n'
        f"{BUDGETS}"
    )
    running.config.chmod(0o600)
    running.start()
    try:
        yield running
    finally:
        code = running.stop()
        sim_dockerd.remove_containers(MODULE_LABEL)
        log = running.log
        shutil.rmtree(root, ignore_errors=True)
        assert code == 0, log


async def deploy(gateway: Gateway, name: str, image: str) -> None:
    spec = {
        "name": name,
        "type": "docker",
        "imagePullPolicy": "never",
        "status": "running",
        "config": {"settings": {"image": image, "createOptions": SLEEPING}},
    }
    await gateway.management().request("POST", "/modules", None, spec)


def module_id(gateway: Gateway, module: str) -> str:
    """The identity `module` acts as: `$edgeAgent` for the agent, its name for the others."""
    return identity_of_module(module, agent=module == gateway.agent)


async def generation(gateway: Gateway, module: str) -> str:
    """The module's generation id, once its identity and workload socket exist."""

    async def found() -> str | None:
        if not (gateway.run_dir / "mnt" / module / "workload.sock").exists():
            return None
        answer = await gateway.management().request("GET", "/identities")
        listed = answer.json()["identities"]
        assert isinstance(listed, list)
        wanted = module_id(gateway, module)
        return next((i["generationId"] for i in listed if i["moduleId"] == wanted), None)

    return await wait_until_async(found, timeout_s=60, what=f"module {module} served")


async def keys_backend(gateway: Gateway) -> tuple[str, object]:
    """The daemon's state and the key service's default backend, from `GET /daemon/status`."""
    status = (await gateway.management().request("GET", "/daemon/status")).json()
    services = status["services"]
    assert isinstance(services, list)
    (keys,) = [s for s in services if s["name"] == "keys"]
    return str(status["state"]), keys["detail"]["default_backend"]


async def answer_of(call) -> tuple[int, dict]:
    try:
        answer = await call
    except EdgekeeperError as error:
        return error.http_status, {"message": error.render()}
    except OSError as error:
        return 0, {"message": f"{type(error).__name__}: {error}"}
    return answer.status, answer.json() or {}


class Traffic:
    """Each module signing and asking for certificates without pause, until `stop()`."""

    def __init__(self, gateway: Gateway, modules: dict[str, str]) -> None:
        self.gateway = gateway
        self.phase = 0
        self.signed: dict[str, list[Outcome]] = {name: [] for name in modules}
        self.certified: dict[str, list[Outcome]] = {name: [] for name in modules}
        self._stopping = asyncio.Event()
        self._tasks = [
            asyncio.create_task(loop(name, genid))
            for name, genid in modules.items()
            for loop in (self._sign, self._certify)
        ]

    def signed_in(self, phase: int) -> int:
        """The fewest signatures a module has made in `phase`."""
        return min(sum(o.phase == phase for o in done) for done in self.signed.values())

    async def stop(self) -> None:
        self._stopping.set()
        await asyncio.gather(*self._tasks)

    async def _sign(self, module: str, genid: str) -> None:
        client = self.gateway.workload(module)
        body = {"keyId": "primary", "algo": "HMACSHA256", "data": base64.b64encode(DATA).decode()}
        target = f"/modules/{quote(module_id(self.gateway, module), safe='')}/genid/{genid}/sign"
        while not self._stopping.is_set():
            phase = self.phase
            status, answer = await answer_of(client.request("POST", target, None, body))
            digest = answer.get("digest")
            result = base64.b64decode(digest) if status == 200 and digest else str(answer)
            self.signed[module].append(Outcome(phase, status, result))

    async def _certify(self, module: str, genid: str) -> None:
        client = self.gateway.workload(module)
        acting_as = module_id(self.gateway, module)
        target = f"/modules/{quote(acting_as, safe='')}/genid/{genid}/certificate/server"
        while not self._stopping.is_set():
            phase = self.phase
            expiration = datetime.now(UTC) + timedelta(days=1)
            body = {"commonName": acting_as.lstrip("$"), "expiration": expiration.isoformat()}
            status, answer = await answer_of(client.request("POST", target, None, body))
            self.certified[module].append(
                Outcome(phase, status, "" if status == 201 else str(answer))
            )


def test_modules_sign_through_file_pkcs11_tpm_reloads_without_a_failure(
    gateway: Gateway, client_image: str, softhsm, swtpm
) -> None:
    token = softhsm.new_token(f"reload-{uuid.uuid4().hex[:6]}")
    switches = [
        (
            "50-pkcs11.toml",
            '[keys]\ndefault_backend = "pkcs11"\n\n'
            f'[keys.pkcs11]\nmodule = "{softhsm.module}"\ntoken_label = "{token.label}"\n'
            f'pin = "{token.user_pin}"\n',
            "pkcs11",
        ),
        (
            "60-tpm.toml",
            f'[keys]\ndefault_backend = "tpm"\n\n[tpm]\ntcti = "{swtpm.tcti}"\n',
            "tpm",
        ),
    ]
    module = f"ekrlmod{uuid.uuid4().hex[:6]}"
    late = f"ekrllate{uuid.uuid4().hex[:6]}"

    async def scenario():
        await deploy(gateway, module, client_image)
        modules = {name: await generation(gateway, name) for name in (gateway.agent, module)}
        traffic = Traffic(gateway, modules)
        states = []
        try:
            await signed_enough(traffic)
            for drop_in, text, backend in switches:
                gateway.reload_with(drop_in, text)
                states.append(
                    await wait_until_async(
                        lambda backend=backend: in_force(gateway, backend),
                        timeout_s=SWITCH_S,
                        what=f"the key service on {backend}",
                    )
                )
                traffic.phase += 1
                await signed_enough(traffic)
        finally:
            await traffic.stop()
        signed, certified = traffic.signed, traffic.certified

        await restart(gateway, module)
        restarted = await sign_once(gateway, module, modules[module])
        await deploy(gateway, late, client_image)
        modules[late] = await generation(gateway, late)
        newcomer = await sign_once(gateway, late, modules[late])
        final = await keys_backend(gateway)
        return modules, signed, certified, states, restarted, newcomer, final

    modules, signed, certified, states, restarted, newcomer, final = asyncio.run(scenario())

    assert states == [("running", "pkcs11"), ("running", "tpm")]
    for name, outcomes in signed.items():
        failed = [o for o in outcomes if o.status != 200]
        assert not failed, f"{name}: {len(failed)} of {len(outcomes)} failed, first {failed[0]}"
        expected = gateway.expected_digest(name, modules[name])
        assert {o.answer for o in outcomes} == {expected}, f"{name}: its key changed"
        for number in range(len(switches) + 1):
            assert sum(o.phase == number for o in outcomes) >= PER_PHASE
    for name, outcomes in certified.items():
        failed = [o for o in outcomes if o.status != 201]
        assert not failed, (
            f"{name}: {len(failed)} of {len(outcomes)} certificates failed: {failed[0]}"
        )
        assert {o.phase for o in outcomes} == {0, 1, 2}
    assert restarted == gateway.expected_digest(module, modules[module])
    assert newcomer == gateway.expected_digest(late, modules[late])
    assert final == ("running", "tpm")
    log = gateway.log
    assert log.count("service reconfigured in place") == len(switches), log
    assert "restarting service for the new configuration" not in log, log


async def in_force(gateway: Gateway, backend: str) -> tuple[str, object] | None:
    state = await keys_backend(gateway)
    return state if state[1] == backend else None


async def signed_enough(traffic: Traffic) -> None:
    """Until every module has made PER_PHASE signatures under the configuration in force."""
    await wait_until_async(
        lambda: traffic.signed_in(traffic.phase) >= PER_PHASE,
        timeout_s=SWITCH_S,
        what=f"{PER_PHASE} signatures by every module in phase {traffic.phase}",
    )


async def restart(gateway: Gateway, module: str) -> None:
    """Restart `module`'s container (once it has one: its socket comes before its container)."""

    async def restarted() -> bool:
        target = f"/modules/{module}/restart"
        status, _ = await answer_of(gateway.management().request("POST", target))
        return status < 300

    await wait_until_async(restarted, timeout_s=60, what=f"module {module} restarted")


async def sign_once(gateway: Gateway, module: str, genid: str) -> bytes:
    """One signature by `module`, once its socket answers again."""
    body = {"keyId": "primary", "algo": "HMACSHA256", "data": base64.b64encode(DATA).decode()}
    target = f"/modules/{module}/genid/{genid}/sign"

    async def signed() -> bytes | None:
        status, answer = await answer_of(
            gateway.workload(module).request("POST", target, None, body)
        )
        return base64.b64decode(answer["digest"]) if status == 200 else None

    return await wait_until_async(signed, timeout_s=60, what=f"a signature by {module}")
