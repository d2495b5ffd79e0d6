"""The module id as a DNS SAN: as IoT Edge's workload server does, every module server certificate
carries the module id of the request without its `$` (`edgeHub` for `$edgeHub`) besides the
common name asked for; the nested api-proxy checks it. Within the server-name policy: an id that
is not a DNS label is left out, and a module whose id is someone else's name gets no certificate.
Certificates are issued by a real `CertificateService` and parsed with `cryptography`."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError
from hypothesis import given
from hypothesis import strategies as st

from firmware.certs.errors import InvalidCertificateRequest, ServerNameRefused
from firmware.certs.policy import CertificatePolicy
from firmware.certs.server_names import ServerNamePolicy, checked_dns_name
from firmware.certs.service import CertificateService, IssuedCertificate
from firmware.executor import BoundedExecutor
from firmware.keys.file import FileBackend
from firmware.keys.registry import BackendRegistry
from firmware.keys.service import KeyService
from firmware.names import MAX_MODULE_NAME, is_module_id

HOST = "gw.local"
NAMES = {"opcua": ("opcua.plant.example",), "IoTEdgeAPIProxy": (HOST,), "temp_sensor": ("temp",)}


@contextlib.asynccontextmanager
async def certificate_service(
    root: Path, module_names: Mapping[str, tuple[str, ...]] = NAMES
) -> AsyncIterator[CertificateService]:
    executor = BoundedExecutor()
    keys = KeyService(
        BackendRegistry("file", {"file": lambda: FileBackend(root / "keys")}), executor
    )
    await keys.start()
    policy = CertificatePolicy(root / "certs", hostname=HOST, module_names=module_names)
    certs = CertificateService(keys, policy, executor)
    await certs.start()
    try:
        yield certs
    finally:
        await certs.stop()
        await keys.close()
        executor.shutdown()


def leaf_of(issued: IssuedCertificate) -> x509.Certificate:
    return x509.load_pem_x509_certificates(issued.certificate_pem.encode())[0]


def dns_sans(issued: IssuedCertificate) -> list[str]:
    leaf = leaf_of(issued)
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.IPAddress) == []
    return sans.get_values_for_type(x509.DNSName)


async def verifies_for(certs: CertificateService, issued: IssuedCertificate, name: str) -> None:
    """Raises unless the chain verifies to the trust bundle for host `name`, as a TLS client
    (nginx's proxy_ssl_verify in the api-proxy) checks it."""
    roots = x509.load_pem_x509_certificates((await certs.trust_bundle()).encode())
    leaf, *chain = x509.load_pem_x509_certificates(issued.certificate_pem.encode())
    verifier = PolicyBuilder().store(Store(roots)).build_server_verifier(x509.DNSName(name))
    verifier.verify(leaf, chain)


@pytest.mark.parametrize(
    ("module_id", "common_name", "sans"),
    [
        ("$edgeHub", HOST, [HOST, "edgeHub"]),  # the hub, as the lead's identity names it
        ("edgeHub", HOST, [HOST, "edgeHub"]),
        ("$edgeHub", "edgeHub", ["edgeHub"]),  # the same name once
        ("$edgeAgent", "edgeagent", ["edgeagent"]),  # the same name in other letters, once
        ("opcua", "opcua.plant.example", ["opcua.plant.example", "opcua"]),
        ("IoTEdgeAPIProxy", HOST, [HOST, "IoTEdgeAPIProxy"]),  # keeps its letters
        ("tempSensor", "tempsensor", ["tempsensor"]),
    ],
)
async def test_every_server_certificate_carries_the_module_id(
    tmp_path: Path, module_id: str, common_name: str, sans: list[str]
) -> None:
    async with certificate_service(tmp_path) as certs:
        issued = await certs.issue_module_server_certificate(module_id, common_name)
        assert dns_sans(issued) == sans
        cn = leaf_of(issued).subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        assert cn == common_name
        for name in sans:
            await verifies_for(certs, issued, name.lower())


async def test_the_hubs_certificate_verifies_for_edgehub_as_the_api_proxy_checks(
    tmp_path: Path,
) -> None:
    async with certificate_service(tmp_path) as certs:
        issued = await certs.issue_module_server_certificate("$edgeHub", HOST)
        await verifies_for(certs, issued, "edgeHub")
        await verifies_for(certs, issued, HOST)
        assert not any("$" in name for name in dns_sans(issued))
        with pytest.raises(VerificationError):
            await verifies_for(certs, issued, "edgeAgent")


async def test_settings_name_a_dollar_module_without_its_dollar(tmp_path: Path) -> None:
    names = {"edgeHub": ("hub.plant.example",)}
    async with certificate_service(tmp_path, module_names=names) as certs:
        issued = await certs.issue_module_server_certificate("$edgeHub", "hub.plant.example")
        assert dns_sans(issued) == ["hub.plant.example", "edgeHub"]
        with pytest.raises(ServerNameRefused, match="module_names"):
            await certs.issue_module_server_certificate("$edgeAgent", "hub.plant.example")


@pytest.mark.parametrize("module_id", ["temp_sensor", "$temp_sensor"])
async def test_an_id_that_is_not_a_dns_label_is_left_out(tmp_path: Path, module_id: str) -> None:
    async with certificate_service(tmp_path) as certs:
        issued = await certs.issue_module_server_certificate(module_id, "temp")
        assert dns_sans(issued) == ["temp"]
        with pytest.raises(InvalidCertificateRequest, match="not a DNS name"):
            await certs.issue_module_server_certificate(module_id, "temp_sensor")


@pytest.mark.parametrize(
    "module_id",
    [
        "a.b",  # a dotted id would name a domain
        "plant.example.com",
        "123",  # all digits: not a host name
        "$$edgeHub",  # one `$` is stripped, the rest is not a label
        "edge$Hub",
        "-edge",
        "edge-",
        "\u212aSensor",  # KELVIN SIGN lowers to "k": not ASCII all the same
        "a" * 64,
    ],
)
def test_ids_that_are_no_dns_label_claim_no_name_of_their_own(module_id: str) -> None:
    policy = ServerNamePolicy(HOST)
    assert policy.allowed(module_id) == ()
    with pytest.raises(ServerNameRefused, match="no name"):
        policy.subject_names(module_id, "edge")


@pytest.mark.parametrize(
    ("module_id", "policy", "clash"),
    [
        ("gw", ServerNamePolicy("gw"), "the gateway's host name"),
        ("$GW", ServerNamePolicy("gw"), "the gateway's host name"),
        ("EdgeHub", ServerNamePolicy(HOST), "the hub's"),  # the hub's name in other letters
        (
            "opc",
            ServerNamePolicy(HOST, module_names={"opcua": ("OPC",), "opc": ("opc.plant",)}),
            "lists for module 'opcua'",
        ),
    ],
)
def test_a_module_whose_id_is_someone_elses_name_gets_no_certificate(
    module_id: str, policy: ServerNamePolicy, clash: str
) -> None:
    # Its own name is always one it may claim; that it is another's refuses every certificate.
    assert policy.allowed(module_id)[0] == module_id.removeprefix("$").lower()
    for common_name in policy.allowed(module_id):
        with pytest.raises(ServerNameRefused, match="gets no server certificate") as refused:
            policy.subject_names(module_id, common_name)
        assert clash in refused.value.message
        assert repr(module_id) in refused.value.message
        assert refused.value.hint
        assert refused.value.http_status == 403


def test_the_hub_keeps_its_name_when_the_host_name_is_the_same() -> None:
    policy = ServerNamePolicy("edgehub", hub_module="edgeHub")
    assert policy.subject_names("$edgeHub", "edgehub") == ("edgehub",)
    assert policy.subject_names("$edgeHub", "EDGEHUB") == ("EDGEHUB",)


_MODULE_IDS = st.from_regex(
    rf"\$?[A-Za-z0-9][A-Za-z0-9_.-]{{0,{MAX_MODULE_NAME - 1}}}", fullmatch=True
)
# A DNS label as RFC 1123 writes it, with a name that is not all digits (a host name).
_DNS_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


@given(_MODULE_IDS)
def test_any_module_id_that_is_a_dns_label_joins_the_sans(module_id: str) -> None:
    assert is_module_id(module_id)
    module = module_id.removeprefix("$")
    policy = ServerNamePolicy(HOST, module_names={module: ("extra.example",)})
    label = _DNS_LABEL.fullmatch(module) is not None and not module.isdigit()
    if label and module.lower() == "edgehub" and module != "edgeHub":
        with pytest.raises(ServerNameRefused, match="the hub's"):
            policy.subject_names(module_id, "extra.example")
        return
    sans = policy.subject_names(module_id, "extra.example")
    assert sans == (("extra.example", module) if label else ("extra.example",))
    assert [checked_dns_name(name) for name in sans] == [name.lower() for name in sans]
