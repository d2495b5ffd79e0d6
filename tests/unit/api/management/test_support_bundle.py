"""`GET /systeminfo/supportbundle` in-process: a zip edgeAgent can upload, holding the module logs
within since/until (the agent's and edgeHub's only when asked), the daemon's log, the API answers,
identities, certificates and the redacted config; bounded in size; and no secret planted anywhere
(config, module settings, module output, the daemon's log) in any of its parts. A reconciler
supervises the in-memory `FakeEngine`; the same route runs against a real dockerd in
tests/integration/api/test_support_bundle_daemon.py."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import io
import ipaddress
import json
import math
import threading
import zipfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from firmware.api import versions
from firmware.api.management import daemon, identities, modules, support_bundle, system
from firmware.api.management.bundle_archive import BundleArchive, LogTail
from firmware.api.management.journal import LogRing
from firmware.api.management.support_bundle import BundleLimits
from firmware.api.model import ApiRequest, ApiResponse
from firmware.api.router import Router
from firmware.certs.service import CertificateInfo
from firmware.config import load_config
from firmware.config.schema import Config
from firmware.errors import Unavailable
from firmware.executor import BoundedExecutor
from firmware.identity.model import ModuleIdentity
from firmware.runtime.backoff import BackoffPolicy
from firmware.runtime.desired import DesiredModules
from firmware.runtime.logstream import LogFrame, Stream
from firmware.runtime.reconciler import Reconciler
from firmware.runtime.spec import ModuleSpec, PullPolicy
from firmware.store.state import StateStore
from tests.peers.fake_engine import FakeEngine, Program
from tests.peers.waiting import wait_until_async
from tests.unit.runtime.supervising import supervising

PATH = "/systeminfo/supportbundle"
DEFAULT_LIMITS = BundleLimits()
AGENT_CMD = ["agent"]
HUB_CMD = ["hub"]
SENSOR_CMD = ["sensor"]

# Secrets planted where a bundle's parts come from; none may be in any part.
PIN = "pin-4711-secret"
SAS_KEY = "c2FzLWtleS1zZWNyZXQtdmFsdWU="
AGENT_REGISTRY_PASSWORD = "agent-registry-pass-99"
MODULE_REGISTRY_PASSWORD = "module-registry-pass-77"
CONNECTION_KEY = "Y29ubi1zdHJpbmcta2V5LXNlY3JldA=="
LOGGED_KEY = "bG9nZ2VkLWtleS1zZWNyZXQ="
LOGGED_PIN = "logged-pin-8642"
RING_KEY = "cmluZy1rZXktc2VjcmV0"
SECRETS = (
    PIN,
    SAS_KEY,
    AGENT_REGISTRY_PASSWORD,
    MODULE_REGISTRY_PASSWORD,
    CONNECTION_KEY,
    LOGGED_KEY,
    LOGGED_PIN,
    RING_KEY,
)
CONNECTION_STRING = f"HostName=hub.example.net;DeviceId=gw1;SharedAccessKey={CONNECTION_KEY}"

MANUAL_SAS = f"""
[provisioning.authentication]
method = "sas"
device_id_pk = {{ value = "{SAS_KEY}" }}
"""
MANUAL_CONNECTION_STRING = f"""
connection_string = "{CONNECTION_STRING}"
"""


def config_file(tmp_path: Path, provisioning: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        f'hostname = "gw.local"\n\n'
        f'[paths]\ndata_dir = "{tmp_path}/data"\nrun_dir = "{tmp_path}/run"\n\n'
        f'[keys.pkcs11]\npin = "{PIN}"\n\n'
        '[provisioning]\nsource = "manual"\niothub_hostname = "hub.example.net"\n'
        'device_id = "gw1"\n'
        f"{provisioning}\n"
        '[agent.config.auth]\nserveraddress = "registry.example.net"\nusername = "agentuser"\n'
        f'password = "{AGENT_REGISTRY_PASSWORD}"\n'
    )
    path.chmod(0o600)
    return path


class FakeCertificates:
    """The certificate service as the bundle reads it: `list`, `certificate`, `degraded`."""

    def __init__(self) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gw.local")])
        ca = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "edgekeeper Edge CA")])
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(ca)
            .public_key(key.public_key())
            .serial_number(7)
            .not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("gw.local"), x509.IPAddress(ipaddress.ip_address("10.0.0.7"))]
                ),
                critical=False,
            )
            .sign(key, hashes.SHA256())
        )
        self.degraded: dict[str, str] = {}

    async def list(self) -> list[CertificateInfo]:
        return [
            CertificateInfo(
                name="edge-ca",
                subject=self.cert.subject.rfc4514_string(),
                issuer=self.cert.issuer.rfc4514_string(),
                not_before=self.cert.not_valid_before_utc,
                not_after=self.cert.not_valid_after_utc,
                days_left=30.0,
                backend="file",
                status="ok",
            )
        ]

    def certificate(self, name: str) -> x509.Certificate:
        assert name == "edge-ca"
        return self.cert


@dataclass
class Gateway:
    router: Router
    reconciler: Reconciler
    engine: FakeEngine
    ring: LogRing
    ran: list[tuple[str, bool]] = field(default_factory=list)  # (call, on the loop's thread)

    async def bundle(self, **query: str) -> ApiResponse:
        return await self.router.dispatch(
            ApiRequest(
                "GET",
                PATH,
                query={"api-version": versions.LATEST, **query},
                headers={"accept": "application/zip"},
            )
        )

    async def parts(self, **query: str) -> dict[str, str]:
        answer = await self.bundle(**query)
        assert answer.status == 200, answer.json()
        return unzipped(answer.encoded_body())

    async def call(self, method: str, path: str, body: object) -> ApiResponse:
        return await self.router.dispatch(
            ApiRequest(
                method, path, query={"api-version": versions.LATEST}, body=json.dumps(body).encode()
            )
        )


def unzipped(body: bytes) -> dict[str, str]:
    """Every member of the zip, decompressed, by name."""
    assert body[:4] == b"PK\x03\x04", body[:40]
    with zipfile.ZipFile(io.BytesIO(body)) as bundle:
        assert bundle.testzip() is None
        return {name: bundle.read(name).decode() for name in bundle.namelist()}


def no_identity_service() -> Any:
    raise Unavailable("the identity service is not running", hint="check the daemon log")


def make_gateway(
    tmp_path: Path,
    *,
    provisioning: str = MANUAL_SAS,
    limits: BundleLimits = DEFAULT_LIMITS,
    identity_list: Callable[[], Any] = no_identity_service,
    certs: Callable[[], Any] = no_identity_service,
    programs: dict[tuple[str, ...], Program] | None = None,
) -> Gateway:
    store = StateStore(tmp_path / "state")
    store.ensure()
    engine = FakeEngine()
    for image in ("agent:1", "img:1"):
        engine.add_image(image)
    for command, program in (programs or {}).items():
        engine.program(command, program)
    agent = ModuleSpec(
        name="edgeAgent",
        image="agent:1",
        create_options={"Cmd": AGENT_CMD},
        pull_policy=PullPolicy.NEVER,
    )
    reconciler = Reconciler(engine, DesiredModules(store), agent=agent, policy=BackoffPolicy())
    config: Config = load_config(config_file(tmp_path, provisioning))
    ring = LogRing()
    router = Router()
    executor = BoundedExecutor()
    gateway = Gateway(router, reconciler, engine, ring)

    def run(fn: Callable[..., Any], *args: Any) -> Awaitable[Any]:
        gateway.ran.append((getattr(fn, "__name__", repr(fn)), False))

        def in_thread() -> Any:
            on_loop = threading.current_thread() is threading.main_thread()
            gateway.ran[-1] = (gateway.ran[-1][0], on_loop)
            return fn(*args)

        return executor.run(in_thread)

    status = SimpleNamespace(document=lambda: {"state": "running", "degraded": []})
    table = [
        *daemon.routes(status),  # type: ignore[arg-type]
        *modules.routes(lambda: reconciler),
        *system.routes(lambda: config, lambda: reconciler, no_identity_service, ring, 0.0, run),
        *identities.routes(identity_list),
        *support_bundle.routes(
            support_bundle.BundleSources(
                router.dispatch, lambda: config, lambda: reconciler, certs, ring, run
            ),
            limits,
        ),
    ]
    for method, pattern, handler in table:
        router.add(method, pattern, handler)
    return gateway


def supervised(gateway: Gateway, scenario: Callable[[], Awaitable[None]]) -> None:
    async def run() -> None:
        async with supervising(gateway.reconciler):
            await asyncio.wait_for(scenario(), 30)

    asyncio.run(run())


def module_body(name: str, command: list[str], **settings: Any) -> dict[str, Any]:
    return {
        "name": name,
        "type": "docker",
        "imagePullPolicy": "never",
        "status": "running",  # ours: IoT Edge's spec has none (edgeAgent starts what it creates)
        "config": {"settings": {"image": "img:1", "createOptions": {"Cmd": command}, **settings}},
    }


async def deploy(gateway: Gateway, body: dict[str, Any]) -> None:
    answer = await gateway.call("POST", "/modules", body)
    assert answer.status == 201, answer.json()


async def logged(gateway: Gateway, name: str, text: str) -> None:
    """Wait until `name`'s output holds `text`."""

    async def there() -> bool:
        with contextlib.suppress(Exception):
            frames = await gateway.reconciler.logs(name)
            found = b"".join([frame.data async for frame in frames])
            return text.encode() in found
        return False

    await wait_until_async(there, timeout_s=10, what=f"{name} wrote {text!r}")


def out(*lines: str, interval: float = 0.0) -> Program:
    return Program(tuple(LogFrame(Stream.STDOUT, f"{line}\n".encode()) for line in lines), interval)


# ---------------------------------------------------------------------------------------------
# the archive and the log tail, on their own


def test_log_tail_keeps_the_newest_whole_lines_within_its_cap() -> None:
    tail = LogTail(100)
    lines = [f"line {i:04d} {'x' * 20}\n".encode() for i in range(1000)]
    for line in lines:
        tail.feed(line)
    kept, left_out = tail.result()
    assert 0 < len(kept) <= 100
    assert kept.endswith(lines[-1]) and kept.startswith(b"line ")  # whole lines, the newest
    assert left_out + len(kept) == sum(map(len, lines))
    assert LogTail(100).result() == (b"", 0)
    small = LogTail(100)
    small.feed(b"short\n")
    assert small.result() == (b"short\n", 0)


def test_log_tail_of_one_huge_line_keeps_nothing_partial() -> None:
    tail = LogTail(10)
    tail.feed(b"y" * 10_000)
    assert tail.result() == (b"", 10_000)


def test_archive_redacts_every_text_part() -> None:
    archive = BundleArchive(0.0)
    archive.add_text("a.txt", f"key SharedAccessKey={LOGGED_KEY}; done")
    archive.add_json("b.json", {"uri": f"pkcs11:token=t;pin-value={LOGGED_PIN}"})
    parts = unzipped(archive.finish())
    assert parts["a.txt"] == "key SharedAccessKey=***; done"
    assert json.loads(parts["b.json"]) == {"uri": "pkcs11:token=t;pin-value=***"}
    with pytest.raises(ValueError, match="finished"):
        archive.add_text("c.txt", "late")


# ---------------------------------------------------------------------------------------------
# the route


def test_the_bundle_is_a_zip_with_the_named_parts(tmp_path: Path) -> None:
    identity = ModuleIdentity(
        module_id="sensor", generation_id="637000000000000001", managed_by="iotedge"
    )
    gateway = make_gateway(
        tmp_path,
        identity_list=lambda: SimpleNamespace(list=lambda: [identity]),
        certs=FakeCertificates,
        programs={
            tuple(AGENT_CMD): out("agent says hello"),
            tuple(HUB_CMD): out("hub says hello"),
            tuple(SENSOR_CMD): out("sensor says hello"),
        },
    )
    gateway.ring("2026-11-27T10:00:00Z info daemon: started")

    async def scenario() -> None:
        await deploy(gateway, module_body("edgeHub", HUB_CMD))
        await deploy(gateway, module_body("sensor", SENSOR_CMD))
        await logged(gateway, "sensor", "sensor says hello")
        await logged(gateway, "edgeHub", "hub says hello")
        await logged(gateway, "edgeAgent", "agent says hello")
        answer = await gateway.bundle(since="1h", iothub_hostname="hub.example.net")
        assert answer.status == 200
        assert ("Content-Type", "application/zip") in answer.headers
        assert (
            "Content-Disposition",
            'attachment; filename="support_bundle.zip"',
        ) in answer.headers
        parts = unzipped(answer.encoded_body())
        assert set(parts) == {
            "systeminfo.json",
            "status.json",
            "daemon.json",
            "modules.json",
            "identities.json",
            "certificates.json",
            "engine.json",
            "config.json",
            "logs/edgekeeper.txt",
            "logs/edgeAgent_log.txt",
            "logs/edgeHub_log.txt",
            "logs/sensor_log.txt",
            "bundle.json",
        }
        sensor_log = parts["logs/sensor_log.txt"]
        assert sensor_log.endswith(" sensor says hello\n"), sensor_log
        stamp = sensor_log.split(" ", 1)[0]  # timestamps=True: each line starts with its time
        assert datetime.datetime.fromisoformat(stamp[:26] + "+00:00")
        assert "agent says hello" in parts["logs/edgeAgent_log.txt"]
        assert parts["logs/edgekeeper.txt"] == "2026-11-27T10:00:00Z info daemon: started\n"
        listed = json.loads(parts["modules.json"])["modules"]
        assert sorted(m["name"] for m in listed) == ["edgeAgent", "edgeHub", "sensor"]
        assert (
            json.loads(parts["systeminfo.json"])["version"]
            == json.loads(parts["bundle.json"])["edgekeeper"]["version"]
        )
        assert json.loads(parts["status.json"])["engine"]["reachable"] is True
        assert json.loads(parts["daemon.json"]) == {"state": "running", "degraded": []}
        assert json.loads(parts["engine.json"])["version"]
        assert json.loads(parts["identities.json"]) == {
            "identities": [{"moduleId": "sensor", "generationId": "637000000000000001"}]
        }
        (cert,) = json.loads(parts["certificates.json"])["certificates"]
        assert cert["name"] == "edge-ca" and cert["subject"] == "CN=gw.local"
        assert cert["issuer"] == "CN=edgekeeper Edge CA"
        assert cert["subjectAltNames"] == ["DNS:gw.local", "IP:10.0.0.7"]
        assert "notAfter" in cert and "PRIVATE" not in parts["certificates.json"]
        assert json.loads(parts["config.json"])["hostname"] == "gw.local"
        manifest = json.loads(parts["bundle.json"])
        assert manifest["board"] == "generic" and manifest["edgekeeper"]["build"]
        assert manifest["request"]["iothub_hostname"] == "hub.example.net"
        assert manifest["request"]["edge_runtime_only"] is False
        assert manifest["notes"] == []
        assert set(manifest["parts"]) == set(parts)

    supervised(gateway, scenario)
    # Compression and redaction ran in the executor's threads, never on the loop.
    called = {name for name, _ in gateway.ran}
    assert {"BundleArchive", "add_text", "add_json", "finish"} <= called
    assert not any(on_loop for _, on_loop in gateway.ran), gateway.ran


def test_parts_that_cannot_be_had_are_noted_and_the_bundle_still_made(tmp_path: Path) -> None:
    gateway = make_gateway(tmp_path)  # no identity nor certificate service

    async def scenario() -> None:
        gateway.engine.disconnect()
        parts = await gateway.parts()
        assert json.loads(parts["identities.json"])["status"] == 503
        assert "not running" in json.loads(parts["certificates.json"])["unavailable"]
        assert "unavailable" in json.loads(parts["engine.json"])
        notes = json.loads(parts["bundle.json"])["notes"]
        assert any(note.startswith("GET /identities answered 503") for note in notes), notes
        assert any(note.startswith("certificates: ") for note in notes), notes
        assert parts["logs/edgeAgent_log.txt"].startswith("no logs: "), parts

    supervised(gateway, scenario)


@pytest.mark.parametrize(
    "query",
    [{"since": "soon"}, {"until": "later"}, {"edge_runtime_only": "yes"}],
)
def test_a_query_that_cannot_be_read_is_a_400_naming_it(tmp_path: Path, query: dict) -> None:
    gateway = make_gateway(tmp_path)

    async def scenario() -> None:
        answer = await gateway.bundle(**query)
        assert answer.status == 400
        (name,) = query
        assert repr(name) in answer.json()["message"]

    supervised(gateway, scenario)


def test_edge_runtime_only_keeps_the_agent_and_edgehub_logs(tmp_path: Path) -> None:
    gateway = make_gateway(
        tmp_path,
        programs={tuple(HUB_CMD): out("hub line"), tuple(SENSOR_CMD): out("sensor line")},
    )

    async def scenario() -> None:
        await deploy(gateway, module_body("edgeHub", HUB_CMD))
        await deploy(gateway, module_body("sensor", SENSOR_CMD))
        await logged(gateway, "sensor", "sensor line")
        await logged(gateway, "edgeHub", "hub line")
        only = await gateway.parts(edge_runtime_only="true")
        logs = sorted(name for name in only if name.startswith("logs/"))
        assert logs == ["logs/edgeAgent_log.txt", "logs/edgeHub_log.txt", "logs/edgekeeper.txt"]
        assert "hub line" in only["logs/edgeHub_log.txt"]
        everything = await gateway.parts(edge_runtime_only="false")
        assert "sensor line" in everything["logs/sensor_log.txt"]
        assert "logs/sensor_log.txt" in await gateway.parts(edge_runtime_only="False")

    supervised(gateway, scenario)


def stamps(log: str) -> list[float]:
    """The time of each line of a timestamped log part."""
    return [
        datetime.datetime.fromisoformat(line.split(" ", 1)[0][:26] + "+00:00").timestamp()
        for line in log.splitlines()
    ]


def test_since_and_until_bound_the_module_logs(tmp_path: Path) -> None:
    gateway = make_gateway(
        tmp_path, programs={tuple(SENSOR_CMD): out("first", "second", "third", interval=1.1)}
    )

    async def scenario() -> None:
        await deploy(gateway, module_body("sensor", SENSOR_CMD))
        await logged(gateway, "sensor", "third")
        whole = (await gateway.parts())["logs/sensor_log.txt"]
        assert [line.split(" ", 1)[1] for line in whole.splitlines()] == [
            "first",
            "second",
            "third",
        ]
        second = stamps(whole)[1]  # 1.1 s after the first, 1.1 s before the third
        since, until = str(math.floor(second)), str(math.ceil(second))
        window = await gateway.parts(since=since, until=until)
        assert window["logs/sensor_log.txt"].endswith(" second\n")
        assert len(window["logs/sensor_log.txt"].splitlines()) == 1
        later = (await gateway.parts(since=since))["logs/sensor_log.txt"]
        assert [line.split(" ", 1)[1] for line in later.splitlines()] == ["second", "third"]
        # edgeAgent's client sends since's value as until: read as no until, not an empty window
        as_edgeagent = await gateway.parts(since=since, until=since)
        assert as_edgeagent["logs/sensor_log.txt"] == later
        manifest = json.loads(as_edgeagent["bundle.json"])
        assert manifest["request"]["since"] == int(since)
        assert manifest["request"]["until"] is None
        moment = datetime.datetime.fromtimestamp(int(until), datetime.UTC).isoformat()
        rfc3339 = await gateway.parts(until=moment)
        assert rfc3339["logs/sensor_log.txt"].endswith(" second\n")
        assert "third" not in rfc3339["logs/sensor_log.txt"]

    supervised(gateway, scenario)


def test_module_logs_are_bounded_per_module_and_in_all(tmp_path: Path) -> None:
    line = "z" * 99
    limits = BundleLimits(module_log_lines=1000, module_log_bytes=4000, total_log_bytes=6000)
    many = out(*(f"{i:04d}{line}" for i in range(200)))
    gateway = make_gateway(
        tmp_path,
        limits=limits,
        programs={tuple(AGENT_CMD): many, tuple(HUB_CMD): many, tuple(SENSOR_CMD): many},
    )

    async def scenario() -> None:
        await deploy(gateway, module_body("edgeHub", HUB_CMD))
        await deploy(gateway, module_body("sensor", SENSOR_CMD))
        for name in ("edgeAgent", "edgeHub", "sensor"):
            await logged(gateway, name, f"0199{line}")
        answer = await gateway.bundle()
        parts = unzipped(answer.encoded_body())
        agent = parts["logs/edgeAgent_log.txt"]
        hub = parts["logs/edgeHub_log.txt"]
        first, *kept = agent.splitlines()
        assert first.startswith("[") and first.endswith(" earlier bytes left out]")
        assert kept[-1].endswith(f"0199{line}") and len({len(k) for k in kept}) == 1
        agent_kept = "".join(f"{k}\n" for k in kept)
        assert 4000 - len(kept[0]) <= len(agent_kept) <= 4000  # the newest whole lines
        first_hub, *hub_kept = hub.splitlines()
        assert first_hub.endswith(" earlier bytes left out]") and hub.endswith(f"0199{line}\n")
        assert len(agent_kept) + len("".join(f"{k}\n" for k in hub_kept)) <= 6000
        assert "logs/sensor_log.txt" not in parts  # nothing left for it
        notes = json.loads(parts["bundle.json"])["notes"]
        assert any(n.startswith("logs/edgeAgent_log.txt: the first ") for n in notes), notes
        assert any(n.startswith("logs/sensor_log.txt: left out") for n in notes), notes
        assert len(answer.encoded_body()) < 6000 + 64 * 1024
        asked = gateway.engine.log_requests[-2:]  # the agent's and edgeHub's, not the sensor's
        assert [(r["tail"], r["timestamps"], r["follow"]) for r in asked] == [
            (1000, True, False)
        ] * 2

    supervised(gateway, scenario)


@pytest.mark.parametrize("provisioning", [MANUAL_SAS, MANUAL_CONNECTION_STRING])
def test_no_planted_secret_is_anywhere_in_the_bundle(tmp_path: Path, provisioning: str) -> None:
    output = out(
        f"connecting with {CONNECTION_STRING.replace(CONNECTION_KEY, LOGGED_KEY)}",
        f"token pkcs11:token=edge;object=device;pin-value={LOGGED_PIN}",
    )
    gateway = make_gateway(
        tmp_path,
        provisioning=provisioning,
        certs=FakeCertificates,
        programs={tuple(SENSOR_CMD): output},
    )
    gateway.ring(f"warning identity: retrying with SharedAccessKey={RING_KEY}")

    async def scenario() -> None:
        auth = {
            "serveraddress": "registry.example.net",
            "username": "moduleuser",
            "password": MODULE_REGISTRY_PASSWORD,
        }
        body = module_body("sensor", SENSOR_CMD, auth=auth)
        body["config"]["env"] = [{"key": "CONNECTION", "value": CONNECTION_STRING}]
        await deploy(gateway, body)
        await logged(gateway, "sensor", LOGGED_PIN)
        answer = await gateway.bundle(since="1d")
        parts = unzipped(answer.encoded_body())
        for secret in SECRETS:
            assert secret.encode() not in answer.encoded_body()
            for name, text in parts.items():
                assert secret not in text, f"{secret!r} is in {name}"
        # the parts are there, with the secrets' places shown as hidden
        assert "SharedAccessKey=***" in parts["logs/sensor_log.txt"]
        assert "pin-value=***" in parts["logs/sensor_log.txt"]
        assert "SharedAccessKey=***" in parts["logs/edgekeeper.txt"]
        (sensor,) = [
            m for m in json.loads(parts["modules.json"])["modules"] if m["name"] == "sensor"
        ]
        assert "auth" not in sensor["config"]["settings"]
        assert sensor["config"]["env"] == [
            {"key": "CONNECTION", "value": CONNECTION_STRING.replace(CONNECTION_KEY, "***")}
        ]
        config = json.loads(parts["config.json"])
        assert config["keys"]["pkcs11"]["pin"] == "<redacted>"
        assert config["agent"]["config"]["auth"]["password"] == "<redacted>"

    supervised(gateway, scenario)
