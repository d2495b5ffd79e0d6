"""The workload API calls IoT Edge's own callers make, replayed byte for byte against the daemon.

edgeHub and edgeAgent (edge-util's WorkloadClient, api-versions 2019-01-30 and 2020-07-07), the
api-proxy module (mqtt/edgelet-client, 2019-01-30, keep-alive) and the C SDK's edge HSM client
(2018-06-28) each get a module of their own on a gateway; the test connects to that module's
socket (`<run_dir>/mnt/<module>/workload.sock`, on which any caller acts as that module only) and
sends the exact writes the client makes (tests/peers/workload_callers.py). Each answer must be one
the client accepts (its status and DTO), and must be right: the digest is HMAC-SHA256 with the
module's primary key, a ciphertext decrypts, the trust bundle is PEM, the server certificate
names the requested host and the module id without `$` (as IoT Edge's edgelet does), the
manifest trust bundle is 200 with "" when none is configured (as edgelet answers).

Every expectation of a call is checked and all failures are reported together, each naming the
caller, the call and the source of the rule.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from firmware.executor import BoundedExecutor
from firmware.identity.modules import MASTER_KEY, derivation_label
from firmware.keys.backend import SignAlgorithm
from firmware.keys.file import FileBackend
from firmware.keys.registry import BackendRegistry
from firmware.keys.service import KeyService
from tests.peers.gateway import Gateway
from tests.peers.waiting import wait_for_path
from tests.peers.workload_callers import (
    API_PROXY_CERTS,
    CSDK,
    EDGE_UTIL_VERSIONS,
    EDGELET_SERVER_CERT,
    CSdkClient,
    EdgeletClient,
    EdgeUtilClient,
    IssuedServerCertificate,
    certificate_of,
    ciphertext_of,
    digest_of,
    exchange,
    manifest_trust_bundle_of,
    plaintext_of,
    trust_bundle_of,
)

pytestmark = pytest.mark.docker

HOSTNAME = "gw.local"
HUB = "edgeHub"
PROXY = "IoTEdgeAPIProxy"
SDK_MODULE = "tempSensor"


@dataclass(frozen=True)
class ModuleSeat:
    """A deployed module as its client sees itself (its container's environment) and its socket."""

    name: str
    env: dict[str, str]
    socket: Path

    @property
    def module_id(self) -> str:
        return self.env["IOTEDGE_MODULEID"]

    @property
    def genid(self) -> str:
        return self.env["IOTEDGE_MODULEGENERATIONID"]


def seat(gw: Gateway, name: str) -> ModuleSeat:
    lines = gw.module_exec(name, "env").stdout.splitlines()
    env = {key: value for key, _, value in (line.partition("=") for line in lines)}
    socket = gw.run_dir / "mnt" / name / "workload.sock"
    wait_for_path(socket, timeout_s=30)
    return ModuleSeat(name, env, socket)


def check_environment(module: ModuleSeat, names: tuple[str, ...], source: str) -> None:
    """The variables a client reads at start and fails without."""
    missing = [name for name in names if not module.env.get(name)]
    assert not missing, f"{module.name} lacks {missing}, which {source} requires"


def deployed(gw: Gateway, name: str, image: str) -> ModuleSeat:
    gw.deploy(name, image)
    return seat(gw, name)


def agent_seat(gw: Gateway) -> ModuleSeat:
    return seat(gw, gw.agent)


def primary_hmac(gw: Gateway, module: ModuleSeat, data: bytes) -> bytes:
    """HMAC-SHA256 of `data` with the module's primary key, derived as the daemon derives it
    (from the device identity key, the module's identity and its generation)."""

    async def sign() -> bytes:
        executor = BoundedExecutor()
        registry = BackendRegistry("file", {"file": lambda: FileBackend(gw.data_dir / "keys")})
        keys = KeyService(registry, executor)
        try:
            child = await keys.derive(
                await keys.load(MASTER_KEY), derivation_label(module.module_id, module.genid)
            )
            return await keys.sign(child, SignAlgorithm.HMAC_SHA256, data)
        finally:
            await keys.close()
            executor.shutdown()

    return asyncio.run(sign())


class Expectations:
    """Runs every check of a test and fails once at the end, listing each broken expectation."""

    def __init__(self) -> None:
        self.failures: list[str] = []

    def check(self, what: str, body: Callable[[], None]) -> None:
        try:
            body()
        except AssertionError as error:
            self.failures.append(f"{what}: {error}")

    def assert_all(self) -> None:
        assert not self.failures, "\n".join(["broken expectations:", *self.failures])


def check_server_certificate(
    issued: IssuedServerCertificate, hostname: str, module: ModuleSeat
) -> None:
    """IoT Edge's server certificate (EDGELET_SERVER_CERT): CN the requested name; SANs
    DNS:<name> and DNS:<module id without '$'>; EKU serverAuth. DNS names compare
    case-insensitively."""
    names = [name.lower() for name in issued.dns_names()]
    assert hostname.lower() in names, f"SANs {names} lack the requested host {hostname!r}"
    bare = module.module_id.removeprefix("$")
    assert bare.lower() in names, (
        f"SANs {names} lack the module id {bare!r}, which IoT Edge adds ({EDGELET_SERVER_CERT})"
    )
    common = issued.leaf.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    assert [attribute.value for attribute in common] == [hostname], common
    usage = issued.leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in usage, list(usage)
    assert issued.expiration > datetime.now(UTC), issued.expiration


def check_chains_to(issued: IssuedServerCertificate, bundle: list[x509.Certificate]) -> None:
    """The leaf is issued by the first chain certificate, and the chain ends under the bundle."""
    path = [issued.leaf, *issued.chain]
    for child, parent in itertools.pairwise(path):
        child.verify_directly_issued_by(parent)
    top = path[-1]
    assert any(top.issuer == root.subject for root in bundle), "chain does not reach the bundle"


@pytest.mark.parametrize("api_version", EDGE_UTIL_VERSIONS)
def test_edge_hub_calls(gateway, client_image, api_version: str) -> None:
    gw = gateway(hostname=HOSTNAME)
    hub = deployed(gw, HUB, client_image)
    # edgeHub asks for EdgeDeviceHostName (edge-hub EdgeHubCertificates.cs), which edgeAgent
    # passes on from its own environment; the daemon may give it to edgeHub directly.
    hostname = hub.env.get("EdgeDeviceHostName") or HOSTNAME
    client = EdgeUtilClient(api_version)
    expect = Expectations()

    text = f"{HOSTNAME}/devices/gw/modules/{hub.module_id}\n1900000000"
    sign = client.sign(hub.module_id, hub.genid, text)

    def signs() -> None:
        (answer,) = exchange(hub.socket, [sign])
        assert digest_of(sign, answer) == primary_hmac(gw, hub, text.encode())

    expect.check(f"edgeHub {api_version} sign", signs)

    def round_trips() -> None:
        iv = uuid.uuid4().hex  # Guid.NewGuid().ToString("N"), as EncryptionProvider stores it
        encrypt = client.encrypt(hub.module_id, hub.genid, iv, "edgeHub store key")
        (answer,) = exchange(hub.socket, [encrypt])
        decrypt = client.decrypt(hub.module_id, hub.genid, iv, ciphertext_of(encrypt, answer))
        (answer,) = exchange(hub.socket, [decrypt])
        assert plaintext_of(decrypt, answer) == "edgeHub store key"

    expect.check(f"edgeHub {api_version} encrypt/decrypt", round_trips)

    bundle: list[x509.Certificate] = []

    def trusts() -> None:
        call = client.trust_bundle()
        (answer,) = exchange(hub.socket, [call])
        bundle[:] = trust_bundle_of(call, answer)

    expect.check(f"edgeHub {api_version} trust bundle", trusts)

    def serves() -> None:
        expiration = datetime.now(UTC) + timedelta(days=90)
        call = client.server_certificate(hub.module_id, hub.genid, hostname, expiration)
        (answer,) = exchange(hub.socket, [call])
        issued = certificate_of(call, answer)
        check_server_certificate(issued, hostname, hub)
        if bundle:
            check_chains_to(issued, bundle)

    expect.check(f"edgeHub {api_version} server certificate", serves)
    expect.assert_all()


@pytest.mark.parametrize("api_version", EDGE_UTIL_VERSIONS)
def test_edge_agent_calls(gateway, api_version: str) -> None:
    gw = gateway(hostname=HOSTNAME)
    agent = agent_seat(gw)
    client = EdgeUtilClient(api_version)
    expect = Expectations()

    def round_trips() -> None:
        iv = uuid.uuid4().hex
        plain = '{"modules":{"tempSensor":{"version":"1.0"}}}'
        encrypt = client.encrypt(agent.module_id, agent.genid, iv, plain)
        (answer,) = exchange(agent.socket, [encrypt])
        decrypt = client.decrypt(agent.module_id, agent.genid, iv, ciphertext_of(encrypt, answer))
        (answer,) = exchange(agent.socket, [decrypt])
        assert plaintext_of(decrypt, answer) == plain

    expect.check(f"edgeAgent {api_version} encrypt/decrypt", round_trips)

    def trusts() -> None:
        call = client.trust_bundle()
        (answer,) = exchange(agent.socket, [call])
        assert trust_bundle_of(call, answer)

    expect.check(f"edgeAgent {api_version} trust bundle", trusts)
    expect.assert_all()


@pytest.mark.parametrize("api_version", ["2020-07-07", None], ids=["2020-07-07", "advertised"])
def test_manifest_trust_bundle_unconfigured(gateway, api_version: str | None) -> None:
    """edge-util's Version_2020_07_07 client asks at 2020-07-07 (edgelet answers 200 at every
    version from 2018-06-28 on); also asked at the version the daemon advertises
    (IOTEDGE_APIVERSION), as a client that trusts it would."""
    gw = gateway(hostname=HOSTNAME)
    agent = agent_seat(gw)
    call = EdgeUtilClient(api_version or agent.env["IOTEDGE_APIVERSION"]).manifest_trust_bundle()
    (answer,) = exchange(agent.socket, [call])
    assert manifest_trust_bundle_of(call, answer) == ""


def test_api_proxy_calls(gateway, client_image) -> None:
    """One kept-alive connection carries the trust bundle, a sign and the server certificate, as
    hyper's pooled connection does. The api-proxy asks for the gateway's host name, which
    edgekeeper grants only through `[certificates] module_names`."""
    gw = gateway(f'[certificates.module_names]\n{PROXY} = ["{HOSTNAME}"]\n', hostname=HOSTNAME)
    proxy = deployed(gw, PROXY, client_image)
    client = EdgeletClient()
    expect = Expectations()
    expect.check(
        "api-proxy environment",
        lambda: check_environment(
            proxy,
            (
                "IOTEDGE_MODULEID",
                "IOTEDGE_MODULEGENERATIONID",
                "IOTEDGE_GATEWAYHOSTNAME",
                "IOTEDGE_WORKLOADURI",
            ),
            API_PROXY_CERTS,
        ),
    )
    hostname = proxy.env.get("IOTEDGE_GATEWAYHOSTNAME") or HOSTNAME

    audience = f"{HOSTNAME}/devices/gw/modules/{proxy.module_id}".lower()
    text = f"{audience}\n1900000000"
    trust = client.trust_bundle()
    sign = client.sign(proxy.module_id, proxy.genid, text)
    expiration = datetime.now(UTC) + timedelta(days=90)
    server = client.server_certificate(proxy.module_id, proxy.genid, hostname, expiration)
    answers = []

    def answers_on_one_connection() -> None:
        answers[:] = exchange(proxy.socket, [trust, sign, server])

    expect.check("api-proxy keep-alive connection", answers_on_one_connection)
    if answers:
        bundle = []

        def trusts() -> None:
            bundle[:] = trust_bundle_of(trust, answers[0])

        expect.check("api-proxy trust bundle", trusts)
        expect.check(
            "api-proxy sign",
            lambda: _equal(digest_of(sign, answers[1]), primary_hmac(gw, proxy, text.encode())),
        )

        def serves() -> None:
            issued = certificate_of(server, answers[2])
            check_server_certificate(issued, hostname, proxy)
            if bundle:
                check_chains_to(issued, bundle)

        expect.check("api-proxy server certificate", serves)
    expect.assert_all()


def test_c_sdk_calls(gateway, client_image) -> None:
    """The C SDK signs its SAS token scope URL-encoded, then fetches the trust bundle; one
    connection per call, no Connection header, Content-Length: 0 on the GET."""
    gw = gateway(hostname=HOSTNAME)
    module = deployed(gw, SDK_MODULE, client_image)
    client = CSdkClient()
    expect = Expectations()
    expect.check(
        "c-sdk environment",
        lambda: check_environment(
            module,
            ("IOTEDGE_WORKLOADURI", "IOTEDGE_MODULEGENERATIONID", "IOTEDGE_MODULEID"),
            CSDK,
        ),
    )

    data = f"{HOSTNAME}/devices/gw/modules/{module.module_id}\n1900000000"
    sign = client.sign(module.module_id, module.genid, data)

    def signs() -> None:
        (answer,) = exchange(module.socket, [sign])
        signed = CSdkClient.signed_text(data).encode()
        assert digest_of(sign, answer) == primary_hmac(gw, module, signed)

    expect.check("c-sdk sign", signs)

    def trusts() -> None:
        call = client.trust_bundle()
        (answer,) = exchange(module.socket, [call])
        assert trust_bundle_of(call, answer)

    expect.check("c-sdk trust bundle", trusts)
    expect.assert_all()


def test_c_sdk_signs_the_url_encoded_scope() -> None:
    """The text the C SDK has signed: the scope through URL_Encode (lower-case hex), then the
    newline and expiry untouched; without an expiry it refuses locally."""
    assert CSdkClient.signed_text("Hub.x/devices/d 1\n19") == "Hub.x%2fdevices%2fd%201\n19"
    with pytest.raises(ValueError):
        CSdkClient.signed_text("hub/devices/d\n")


def _equal(left: bytes, right: bytes) -> None:
    assert left == right, "digest is not HMAC-SHA256 with the module's primary key"
