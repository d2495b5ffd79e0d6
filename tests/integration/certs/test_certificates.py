"""The certificate service end to end: chains validated by `cryptography`, SANs, lifetime
capping, restart reuse, operator-provided Edge CAs (software key, key-service RSA key)."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from firmware.certs.authority import EDGE_CA, ROOT, WORKLOAD_CA
from firmware.certs.errors import EdgeCaConfigError, InvalidCertificateRequest, ServerNameRefused
from firmware.errors import NotSupported
from firmware.keys.backend import KeyKind
from tests.integration.certs.conftest import run


def pem_chain(text: str) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(text.encode())


def verify_server(bundle: str, chain: str, host: x509.GeneralName):
    roots = pem_chain(bundle)
    leaf, *intermediates = pem_chain(chain)
    verifier = PolicyBuilder().store(Store(roots)).build_server_verifier(host)
    return verifier.verify(leaf, intermediates)


def test_quickstart_chain_validates_root_to_module_cert(device):
    async def scenario():
        _keys, certs = await device.boot()
        issued = await certs.issue_server_certificate(
            "mymodule", ["mymodule", "mymodule.local", "10.0.0.7"]
        )
        bundle = await certs.trust_bundle()
        await certs.stop()
        return issued, bundle

    issued, bundle = run(scenario())
    chain = verify_server(bundle, issued.certificate_pem, x509.DNSName("mymodule.local"))
    subjects = [c.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value for c in chain]
    assert subjects == [
        "mymodule",
        "edgekeeper workload CA testbox",
        "edgekeeper Edge CA testbox",
        "edgekeeper quickstart root testbox",
    ]
    verify_server(bundle, issued.certificate_pem, x509.IPAddress(ipaddress.ip_address("10.0.0.7")))
    leaf = pem_chain(issued.certificate_pem)[0]
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["mymodule", "mymodule.local"]
    key = serialization.load_pem_private_key(issued.private_key_pem.encode(), None)
    assert key.public_key().public_numbers() == leaf.public_key().public_numbers()
    with pytest.raises(VerificationError):
        verify_server(bundle, issued.certificate_pem, x509.DNSName("othermodule"))


def test_identity_certificate_is_a_client_certificate(device):
    async def scenario():
        _keys, certs = await device.boot()
        issued = await certs.issue_identity_certificate("tempSensor")
        bundle = await certs.trust_bundle()
        await certs.stop()
        return issued, bundle

    issued, bundle = run(scenario())
    leaf, *intermediates = pem_chain(issued.certificate_pem)
    assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "tempSensor"
    usage = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    for cert, issuer in zip(pem_chain(issued.certificate_pem), intermediates, strict=False):
        cert.verify_directly_issued_by(issuer)
    intermediates[-1].verify_directly_issued_by(pem_chain(bundle)[0])


def test_lifetime_is_capped_by_the_issuer(device):
    async def scenario():
        _keys, certs = await device.boot(workload_ca_lifetime=3600.0)
        far = datetime(2100, 1, 1, tzinfo=UTC)
        issued = await certs.issue_server_certificate("m", expiration=far.isoformat())
        workload = certs.certificate(WORKLOAD_CA)
        short = await certs.issue_server_certificate(
            "m", expiration=datetime.now(UTC) + timedelta(seconds=600)
        )
        with pytest.raises(InvalidCertificateRequest, match="past"):
            await certs.issue_server_certificate("m", expiration="2000-01-01T00:00:00Z")
        with pytest.raises(InvalidCertificateRequest, match="ISO 8601"):
            await certs.issue_server_certificate("m", expiration="tomorrow")
        with pytest.raises(InvalidCertificateRequest):
            await certs.issue_server_certificate("m", ["bad name!"])
        await certs.stop()
        return issued, short, workload

    issued, short, workload = run(scenario())
    assert issued.expiration == workload.not_valid_after_utc
    assert pem_chain(issued.certificate_pem)[0].not_valid_after_utc == workload.not_valid_after_utc
    assert short.expiration < workload.not_valid_after_utc
    edge = pem_chain(issued.certificate_pem)[2]
    assert workload.not_valid_after_utc <= edge.not_valid_after_utc


def test_module_lifetimes_are_capped_at_the_policy_lifetime(device):
    async def scenario():
        _keys, certs = await device.boot(server_lifetime=3600.0, identity_lifetime=1800.0)
        far = datetime.now(UTC) + timedelta(days=3650)
        server = await certs.issue_server_certificate("m", expiration=far)
        identity = await certs.issue_identity_certificate("m", expiration=far)
        default = await certs.issue_server_certificate("m")
        soon = await certs.issue_server_certificate(
            "m", expiration=datetime.now(UTC) + timedelta(seconds=600)
        )
        await certs.stop()
        return server, identity, default, soon

    started = datetime.now(UTC)
    server, identity, default, soon = run(scenario())
    for issued, lifetime in ((server, 3600), (identity, 1800), (default, 3600)):
        leaf = pem_chain(issued.certificate_pem)[0]
        assert leaf.not_valid_after_utc == issued.expiration
        assert leaf.not_valid_after_utc - leaf.not_valid_before_utc == timedelta(seconds=lifetime)
    assert soon.expiration < started + timedelta(seconds=700)


def test_module_server_certificate_names_only_what_the_module_may_claim(device):
    async def scenario():
        _keys, certs = await device.boot(
            hostname="gw.local", module_names={"opcua": ("opcua.plant.example",)}
        )
        hub = await certs.issue_module_server_certificate("edgeHub", "gw.local")
        extra = await certs.issue_module_server_certificate("opcua", "opcua.plant.example")
        with pytest.raises(ServerNameRefused, match="hub_module"):
            await certs.issue_module_server_certificate("opcua", "gw.local")
        with pytest.raises(ServerNameRefused, match="module_names"):
            await certs.issue_module_server_certificate("opcua", "edgeHub")
        with pytest.raises(InvalidCertificateRequest, match="wildcard"):
            await certs.issue_module_server_certificate("edgeHub", "*.gw.local")
        bundle = await certs.trust_bundle()
        await certs.stop()
        return hub, extra, bundle

    hub, extra, bundle = run(scenario())
    verify_server(bundle, hub.certificate_pem, x509.DNSName("gw.local"))
    verify_server(bundle, extra.certificate_pem, x509.DNSName("opcua.plant.example"))
    for issued, names in (
        (hub, ["gw.local", "edgeHub"]),
        (extra, ["opcua.plant.example", "opcua"]),
    ):
        leaf = pem_chain(issued.certificate_pem)[0]
        sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert sans.get_values_for_type(x509.DNSName) == names
        assert sans.get_values_for_type(x509.IPAddress) == []


def test_restart_reuses_stored_certificates(device):
    async def first():
        _keys, certs = await device.boot()
        serials = {n: certs.certificate(n).serial_number for n in (ROOT, EDGE_CA, WORKLOAD_CA)}
        await certs.stop()
        return serials

    async def second():
        _keys, certs = await device.boot()
        serials = {n: certs.certificate(n).serial_number for n in (ROOT, EDGE_CA, WORKLOAD_CA)}
        listing = await certs.list()
        await certs.stop()
        return serials, listing

    before = run(first())
    after, listing = run(second())
    assert before == after
    by_name = {info.name: info for info in listing}
    assert set(by_name) == {ROOT, EDGE_CA, WORKLOAD_CA}
    assert by_name[WORKLOAD_CA].issuer == "CN=edgekeeper Edge CA testbox"
    assert by_name[WORKLOAD_CA].backend == "file"
    assert 89 < by_name[WORKLOAD_CA].days_left <= 90
    assert all(info.status == "ok" for info in listing)
    assert oct((device.root / "certs").stat().st_mode & 0o777) == "0o700"


def test_manual_renewal_replaces_the_certificate_and_its_children(device):
    async def scenario():
        _keys, certs = await device.boot()
        old = {n: certs.certificate(n) for n in (ROOT, EDGE_CA, WORKLOAD_CA)}
        info = await certs.renew(EDGE_CA)
        new = {n: certs.certificate(n) for n in (ROOT, EDGE_CA, WORKLOAD_CA)}
        await certs.stop()
        return old, new, info

    old, new, info = run(scenario())
    assert new[ROOT].serial_number == old[ROOT].serial_number
    assert new[EDGE_CA].serial_number != old[EDGE_CA].serial_number
    assert new[WORKLOAD_CA].serial_number != old[WORKLOAD_CA].serial_number
    assert new[EDGE_CA].public_key().public_numbers() == old[EDGE_CA].public_key().public_numbers()
    assert info.name == EDGE_CA
    new[WORKLOAD_CA].verify_directly_issued_by(new[EDGE_CA])
    old[WORKLOAD_CA].verify_directly_issued_by(new[EDGE_CA])


def test_manifest_trust_bundle_from_config(device, tmp_path):
    bundle_file = tmp_path / "manifest.pem"

    async def scenario(**changes):
        _keys, certs = await device.boot(**changes)
        try:
            return await certs.manifest_trust_bundle()
        finally:
            await certs.stop()

    assert run(scenario()) is None
    with pytest.raises(EdgeCaConfigError, match="manifest_trust_bundle file"):
        run(scenario(manifest_trust_bundle=bundle_file))
    bundle_file.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    assert "MIIB" in run(scenario(manifest_trust_bundle=bundle_file))


def _operator_ca(tmp_path, key):
    now = datetime.now(UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Operator Edge CA")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_file = tmp_path / "edge-ca.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert, cert_file


def test_operator_provided_edge_ca_from_files(device, tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    cert, cert_file = _operator_ca(tmp_path, key)
    key_file = tmp_path / "edge-ca.key.pem"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )

    async def scenario():
        _keys, certs = await device.boot(edge_ca_cert=cert_file, edge_ca_key=key_file.as_uri())
        issued = await certs.issue_server_certificate("mod")
        bundle = await certs.trust_bundle()
        with pytest.raises(NotSupported, match="operator"):
            await certs.renew(EDGE_CA)
        listing = {info.name: info for info in await certs.list()}
        await certs.stop()
        return issued, bundle, listing

    issued, bundle, listing = run(scenario())
    assert pem_chain(bundle) == [cert]
    verify_server(bundle, issued.certificate_pem, x509.DNSName("mod"))
    assert set(listing) == {EDGE_CA, WORKLOAD_CA}
    assert listing[EDGE_CA].backend == "file (operator)"


@pytest.mark.parametrize(
    "uri", ["key:operator-ca", "pkcs11:token=t;object=operator-ca;type=private"]
)
def test_operator_ca_with_key_service_rsa_key_signs_through_der_assembly(device, tmp_path, uri):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert, cert_file = _operator_ca(tmp_path, key)
    pkcs8 = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )

    async def scenario():
        keys = device.keys()
        await keys.start()
        await keys.import_key("operator-ca", KeyKind.RSA_2048, pkcs8)
        _keys, certs = await device.boot(edge_ca_cert=cert_file, edge_ca_key=uri)
        issued = await certs.issue_server_certificate("mod")
        bundle = await certs.trust_bundle()
        workload = certs.certificate(WORKLOAD_CA)
        await certs.stop()
        return issued, bundle, workload

    issued, bundle, workload = run(scenario())
    assert workload.signature_algorithm_oid == x509.SignatureAlgorithmOID.RSA_WITH_SHA256
    workload.verify_directly_issued_by(cert)
    verify_server(bundle, issued.certificate_pem, x509.DNSName("mod"))


def test_operator_key_that_does_not_match_is_refused(device, tmp_path):
    _cert, cert_file = _operator_ca(tmp_path, ec.generate_private_key(ec.SECP256R1()))
    other = tmp_path / "other.pem"
    other.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(EdgeCaConfigError, match="does not match"):
        run(device.boot(edge_ca_cert=cert_file, edge_ca_key=other.as_uri()))
