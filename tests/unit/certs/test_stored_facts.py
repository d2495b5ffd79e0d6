"""Stored certificate facts: when a start may rely on them without parsing the certificate."""

from __future__ import annotations

import datetime
import hashlib
import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from firmware.certs.stored import StoredFacts, der_sha256, facts_hold

NOW = 1_900_000_000.0


def self_signed_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "facts")])
    start = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=10000))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


PEM = self_signed_pem()
SHA = hashlib.sha256(ssl.PEM_cert_to_DER_cert(PEM)).hexdigest()


def record(**changes: object) -> dict[str, object]:
    facts = StoredFacts(NOW - 10, NOW + 1000, SHA, "issuer-sha")
    return {"certificate": PEM, "key": "edge-ca", "issuer": "root", **facts.fields(), **changes}


def test_facts_of_an_unchanged_record_hold() -> None:
    assert der_sha256(PEM) == SHA
    held = facts_hold(record(), "edge-ca", "issuer-sha", NOW)
    assert held == StoredFacts(NOW - 10, NOW + 1000, SHA, "issuer-sha")


def test_a_self_signed_root_is_its_own_issuer() -> None:
    assert facts_hold(record(issuer_sha256=SHA), "edge-ca", None, NOW) is not None
    assert facts_hold(record(), "edge-ca", None, NOW) is None


@pytest.mark.parametrize(
    ("changes", "key", "issuer"),
    [
        ({}, "other-key", "issuer-sha"),  # made for another key
        ({"certificate": PEM.replace("A", "B", 1)}, "edge-ca", "issuer-sha"),  # PEM edited
        ({"certificate": "not a certificate"}, "edge-ca", "issuer-sha"),
        ({"not_after": NOW}, "edge-ca", "issuer-sha"),  # expired
        ({}, "edge-ca", "another-issuer"),  # its issuer was issued again
        ({"sha256": None}, "edge-ca", "issuer-sha"),
        ({"not_before": "soon"}, "edge-ca", "issuer-sha"),  # malformed
    ],
)
def test_facts_do_not_hold(changes: dict[str, object], key: str, issuer: str) -> None:
    assert facts_hold(record(**changes), key, issuer, NOW) is None


def test_a_record_written_before_facts_existed_has_none() -> None:
    assert StoredFacts.of_record({"certificate": PEM, "key": "edge-ca", "issuer": None}) is None
