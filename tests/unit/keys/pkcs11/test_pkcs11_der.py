"""DER conversions between PKCS#11 attribute encodings and what callers get."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from firmware.keys.errors import KeyOperationFailed
from firmware.keys.pkcs11 import der


def _spki(public) -> bytes:
    return public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_p256_params_are_the_named_curve_oid_cryptography_writes() -> None:
    spki = _spki(ec.generate_private_key(ec.SECP256R1()).public_key())
    # AlgorithmIdentifier: id-ecPublicKey, then the named curve as the parameters.
    algorithm = bytes.fromhex("301306072a8648ce3d0201") + der.P256_EC_PARAMS
    assert spki[2 : 2 + len(algorithm)] == algorithm


def test_ecdsa_raw_and_der_round_trip_with_cryptography() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    for message in (b"", b"a", b"hello" * 100):
        signature = key.sign(message, ec.ECDSA(hashes.SHA256()))
        raw = der.ecdsa_der_to_raw(signature)
        assert raw is not None and len(raw) == 64
        r, s = decode_dss_signature(signature)
        assert raw == r.to_bytes(32, "big") + s.to_bytes(32, "big")
        assert der.ecdsa_raw_to_der(raw) == signature
        key.public_key().verify(der.ecdsa_raw_to_der(raw), message, ec.ECDSA(hashes.SHA256()))


def test_ecdsa_raw_with_leading_zero_bytes() -> None:
    raw = (1).to_bytes(32, "big") + (2**255).to_bytes(32, "big")
    assert decode_dss_signature(der.ecdsa_raw_to_der(raw)) == (1, 2**255)


@pytest.mark.parametrize(
    "bad",
    [b"", b"\x30\x00", b"not der", encode_dss_signature(1, 2) + b"x"],
)
def test_malformed_der_signature_is_none(bad: bytes) -> None:
    assert der.ecdsa_der_to_raw(bad) is None


def test_out_of_range_integers_are_none() -> None:
    assert der.ecdsa_der_to_raw(encode_dss_signature(2**256, 1)) is None
    assert der.ecdsa_der_to_raw(encode_dss_signature(0, 1)) is None


def test_odd_raw_signature_is_refused() -> None:
    with pytest.raises(KeyOperationFailed):
        der.ecdsa_raw_to_der(b"\x01" * 63)


def test_ec_point_wrapping_and_tolerance_for_raw_points() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    point = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    wrapped = der.ec_point_attribute(point)
    assert wrapped[:2] == b"\x04\x41" and wrapped[2:] == point
    assert der.ec_point_from_attribute(wrapped) == point
    assert der.ec_point_from_attribute(point) == point
    with pytest.raises(KeyOperationFailed):
        der.ec_point_from_attribute(b"\x04\x41" + point[:10])


def test_ec_public_der_matches_cryptography() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    point = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    spki = der.ec_public_der(der.P256_EC_PARAMS, der.ec_point_attribute(point))
    assert spki == _spki(key.public_key())


def test_ec_public_der_refuses_other_curves_and_bad_points() -> None:
    with pytest.raises(KeyOperationFailed, match="P-256"):
        der.ec_public_der(bytes.fromhex("06052b81040022"), b"\x04\x41" + b"\x04" * 65)
    with pytest.raises(KeyOperationFailed, match="invalid P-256 point"):
        der.ec_public_der(der.P256_EC_PARAMS, b"\x04\x41\x04" + b"\x01" * 64)


def test_rsa_public_der_matches_cryptography() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    numbers = key.public_key().public_numbers()
    spki = der.rsa_public_der(der.integer_bytes(numbers.n), der.integer_bytes(numbers.e))
    assert spki == _spki(key.public_key())


def test_integer_bytes_are_minimal_big_endian() -> None:
    assert der.integer_bytes(0) == b"\x00"
    assert der.integer_bytes(65537) == b"\x01\x00\x01"
    assert der.integer_bytes(255) == b"\xff"
