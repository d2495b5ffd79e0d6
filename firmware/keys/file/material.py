"""Key material for the file backend: generating, validating imports, and loading key objects.

Deferred: cryptography is imported by the functions that use it (as in `firmware.keys.software`).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from firmware.keys import software
from firmware.keys.backend import KeyKind
from firmware.keys.errors import KeyOperationFailed

if TYPE_CHECKING:
    from firmware.keys.software import PrivateKey

SECRET_LENGTH = 32
HMAC_IMPORT_RANGE = (16, 128)


def generate(kind: KeyKind) -> bytes:
    """Fresh material of `kind`: PKCS#8 DER for pairs, random bytes for secrets."""
    if kind.asymmetric:
        # Deferred: cryptography loads only when a key pair is made or read, not for secrets.
        from cryptography.hazmat.primitives.asymmetric import ec, rsa

        private: PrivateKey
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
    private = software.load_pkcs8(key_id, kind, material)
    return _pkcs8(private)


def public_der(private: PrivateKey) -> bytes:
    # Deferred: cryptography loads only when a key pair is made or read, not for secrets.
    from cryptography.hazmat.primitives import serialization

    return private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _pkcs8(private: PrivateKey) -> bytes:
    # Deferred: cryptography loads only when a key pair is made or read, not for secrets.
    from cryptography.hazmat.primitives import serialization

    return private.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
