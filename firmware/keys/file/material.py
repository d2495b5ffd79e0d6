"""Key material for the file backend: generating, validating imports, and loading key objects."""

from __future__ import annotations

import os
from typing import Any

from firmware.keys.backend import KeyKind
from firmware.keys.errors import KeyOperationFailed

SECRET_LENGTH = 32
HMAC_IMPORT_RANGE = (16, 128)


def generate(kind: KeyKind) -> bytes:
    """Fresh material of `kind`: PKCS#8 DER for pairs, random bytes for secrets."""
    if kind.asymmetric:
        from cryptography.hazmat.primitives.asymmetric import ec, rsa

        if kind is KeyKind.EC_P256:
            private = ec.generate_private_key(ec.SECP256R1())
        else:
            private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return _pkcs8(private)
    return os.urandom(SECRET_LENGTH)


def check_import(key_id: str, kind: KeyKind, material: bytes) -> bytes:
    """Validate caller-supplied material for `kind`; return what to store."""
    if kind is KeyKind.AES_256:
        if len(material) != SECRET_LENGTH:
            raise KeyOperationFailed(
                f"AES-256 key {key_id!r} must be {SECRET_LENGTH} bytes, got {len(material)}"
            )
        return bytes(material)
    if kind is KeyKind.HMAC_SHA256:
        low, high = HMAC_IMPORT_RANGE
        if not low <= len(material) <= high:
            raise KeyOperationFailed(
                f"HMAC key {key_id!r} must be {low} to {high} bytes, got {len(material)}"
            )
        return bytes(material)
    private = load_private(key_id, kind, material)
    return _pkcs8(private)


def load_private(key_id: str, kind: KeyKind, der: bytes) -> Any:
    """The private key object of a pair stored as PKCS#8 DER; checks it fits `kind`."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    try:
        private = serialization.load_der_private_key(der, password=None)
    except (ValueError, TypeError) as err:
        raise KeyOperationFailed(
            f"key {key_id!r} is not an unencrypted PKCS#8 DER private key",
            hint="export the key as PKCS#8 DER without a password",
        ) from err
    fits = (
        kind is KeyKind.EC_P256
        and isinstance(private, ec.EllipticCurvePrivateKey)
        and isinstance(private.curve, ec.SECP256R1)
    ) or (
        kind is KeyKind.RSA_2048
        and isinstance(private, rsa.RSAPrivateKey)
        and private.key_size == 2048
    )
    if not fits:
        raise KeyOperationFailed(f"key {key_id!r} is not a {kind.value} key")
    return private


def public_der(private: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _pkcs8(private: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return private.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
