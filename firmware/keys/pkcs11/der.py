"""Conversions between PKCS#11 attribute encodings and the DER forms edgekeeper hands out.

PKCS#11 signs ECDSA as raw `r || s` and stores an EC public point as a DER OCTET STRING in
CKA_EC_POINT; RSA public keys are a big-endian modulus and exponent. Callers get DER ECDSA
signatures and DER SubjectPublicKeyInfo, as `cryptography` produces and reads them.
"""

from __future__ import annotations

from firmware.keys.errors import KeyOperationFailed

# DER of the OID 1.2.840.10045.3.1.7 (prime256v1 / secp256r1): the CKA_EC_PARAMS of a P-256 key.
P256_EC_PARAMS = bytes.fromhex("06082a8648ce3d030107")
P256_SCALAR_LENGTH = 32
P256_POINT_LENGTH = 1 + 2 * P256_SCALAR_LENGTH


def ecdsa_raw_to_der(raw: bytes) -> bytes:
    """DER ECDSA-Sig-Value for a raw `r || s` signature of two equal-length integers."""
    # Deferred: cryptography loads only when a signature or public key is converted.
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    if not raw or len(raw) % 2:
        raise KeyOperationFailed(f"the token returned a {len(raw)}-byte ECDSA signature")
    half = len(raw) // 2
    return encode_dss_signature(
        int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big")
    )


def ecdsa_der_to_raw(der: bytes, scalar_length: int = P256_SCALAR_LENGTH) -> bytes | None:
    """Raw `r || s` for a DER signature, or None when it is not a well-formed signature."""
    # Deferred: cryptography loads only when a signature or public key is converted.
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    try:
        r, s = decode_dss_signature(der)
    except ValueError:
        return None
    limit = 1 << (8 * scalar_length)
    if not (0 < r < limit and 0 < s < limit):
        return None
    return r.to_bytes(scalar_length, "big") + s.to_bytes(scalar_length, "big")


def ec_point_attribute(point: bytes) -> bytes:
    """CKA_EC_POINT value for an uncompressed point: the point wrapped in a DER OCTET STRING."""
    if len(point) > 127:
        raise ValueError("EC point longer than a short-form DER length")
    return bytes((0x04, len(point))) + point


def ec_point_from_attribute(value: bytes) -> bytes:
    """The uncompressed point in a CKA_EC_POINT value; tolerates tokens that omit the DER wrap."""
    if len(value) == P256_POINT_LENGTH and value[0] == 0x04:
        return value
    if len(value) >= 2 and value[0] == 0x04 and value[1] == len(value) - 2:
        return value[2:]
    raise KeyOperationFailed(
        f"the token returned a CKA_EC_POINT of {len(value)} bytes that is not a DER OCTET STRING"
    )


def ec_public_der(ec_params: bytes, ec_point: bytes) -> bytes:
    """SubjectPublicKeyInfo DER for a P-256 key from CKA_EC_PARAMS and CKA_EC_POINT."""
    # Deferred: cryptography loads only when a signature or public key is converted.
    from cryptography.hazmat.primitives import serialization

    # Deferred: cryptography loads only when a signature or public key is converted.
    from cryptography.hazmat.primitives.asymmetric import ec

    if ec_params != P256_EC_PARAMS:
        raise KeyOperationFailed("the token's EC key is not on the P-256 curve")
    try:
        public = ec.EllipticCurvePublicKey.from_encoded_point(
            ec.SECP256R1(), ec_point_from_attribute(ec_point)
        )
    except ValueError as err:
        raise KeyOperationFailed(f"the token returned an invalid P-256 point: {err}") from err
    return public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def rsa_public_der(modulus: bytes, public_exponent: bytes) -> bytes:
    """SubjectPublicKeyInfo DER for an RSA key from CKA_MODULUS and CKA_PUBLIC_EXPONENT."""
    # Deferred: cryptography loads only when a signature or public key is converted.
    from cryptography.hazmat.primitives import serialization

    # Deferred: cryptography loads only when a signature or public key is converted.
    from cryptography.hazmat.primitives.asymmetric import rsa

    numbers = rsa.RSAPublicNumbers(
        int.from_bytes(public_exponent, "big"), int.from_bytes(modulus, "big")
    )
    try:
        public = numbers.public_key()
    except ValueError as err:
        raise KeyOperationFailed(f"the token returned an invalid RSA public key: {err}") from err
    return public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def integer_bytes(value: int) -> bytes:
    """Big-endian bytes of a non-negative integer, no leading zeros (PKCS#11 "Big integer")."""
    return value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")
