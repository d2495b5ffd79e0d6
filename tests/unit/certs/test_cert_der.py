"""The DER writer: lengths in short and long form, and a certificate framed around cryptography's
TBS bytes and signature parses back to the same certificate."""

from __future__ import annotations

from datetime import UTC

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from firmware.certs import der, profiles
from firmware.certs.errors import InvalidCertificateRequest


@pytest.mark.parametrize(
    ("size", "encoded"),
    [(0, "00"), (127, "7f"), (128, "8180"), (255, "81ff"), (256, "820100"), (70000, "83011170")],
)
def test_length_forms(size, encoded):
    assert der.length(size).hex() == encoded


def test_negative_length_is_refused():
    with pytest.raises(ValueError):
        der.length(-1)


def test_bit_string_and_sequence():
    assert der.bit_string(b"\xab").hex() == "030200ab"
    assert der.sequence(b"\x05\x00", b"\x05\x00").hex() == "300405000500"


@pytest.mark.parametrize("kind", ["ec", "rsa"])
def test_reassembled_certificate_is_byte_identical(kind):
    from datetime import datetime, timedelta

    if kind == "ec":
        key, identifier = ec.generate_private_key(ec.SECP256R1()), der.ECDSA_WITH_SHA256
    else:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        identifier = der.SHA256_WITH_RSA
    now = datetime.now(UTC).replace(microsecond=0)
    builder = profiles.ca_builder(
        "t", key.public_key(), None, key.public_key(), now, now + timedelta(days=1), None
    )
    cert = builder.sign(key, hashes.SHA256())
    rebuilt = der.certificate(cert.tbs_certificate_bytes, identifier, cert.signature)
    assert rebuilt == cert.public_bytes(serialization.Encoding.DER)
    x509.load_der_x509_certificate(rebuilt).verify_directly_issued_by(cert)


@pytest.mark.parametrize("value", ["a b", "-x", "x-", "", "a..b", "é.com", "x" * 64])
def test_bad_subject_alt_names(value):
    with pytest.raises(InvalidCertificateRequest):
        profiles.subject_alt_names([value])


def test_good_subject_alt_names():
    entries = profiles.subject_alt_names(["mod", "*.mod.local", "10.1.2.3", "::1", "a_b"])
    assert [type(e).__name__ for e in entries] == [
        "DNSName",
        "DNSName",
        "IPAddress",
        "IPAddress",
        "DNSName",
    ]
