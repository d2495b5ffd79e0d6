"""Software cryptography on key objects and secrets in memory: the file backend's operations and
the key service's derived keys. Also the algorithm/kind checks every backend may reuse.

Deferred: cryptography is imported by the functions that use it, so loading the key service does
not load it (tests/unit/keys/test_keys_lazy_imports.py).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import TYPE_CHECKING, TypeAlias

from firmware.keys.backend import KeyKind, SignAlgorithm
from firmware.keys.errors import KeyKindMismatch, KeyOperationFailed

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.hazmat.primitives.asymmetric.padding import AsymmetricPadding

    # The key pair kinds: EC_P256 and RSA_2048.
    PrivateKey: TypeAlias = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    PublicKey: TypeAlias = ec.EllipticCurvePublicKey | rsa.RSAPublicKey

GCM_TAG_LENGTH = 16
_DIGEST_LENGTH = 32

_KIND_OF = {
    SignAlgorithm.ECDSA_SHA256: KeyKind.EC_P256,
    SignAlgorithm.ECDSA_SHA256_DIGEST: KeyKind.EC_P256,
    SignAlgorithm.RSA_PKCS1_SHA256: KeyKind.RSA_2048,
    SignAlgorithm.RSA_PSS_SHA256: KeyKind.RSA_2048,
    SignAlgorithm.HMAC_SHA256: KeyKind.HMAC_SHA256,
}


def check_algorithm(key_id: str, kind: KeyKind, algorithm: SignAlgorithm) -> None:
    if _KIND_OF[algorithm] is not kind:
        raise KeyKindMismatch(
            f"key {key_id!r} is a {kind.value} key and cannot do {algorithm.value}",
            hint=f"use a {_KIND_OF[algorithm].value} key for {algorithm.value}",
        )


def sha256_digest(algorithm: SignAlgorithm, data: bytes) -> bytes:
    """The SHA-256 digest an ECDSA or RSA `algorithm` signs: `data` itself for
    `ECDSA_SHA256_DIGEST` (checked to be 32 bytes), else the hash of `data`."""
    if algorithm is not SignAlgorithm.ECDSA_SHA256_DIGEST:
        return hashlib.sha256(data).digest()
    if len(data) != _DIGEST_LENGTH:
        raise KeyOperationFailed(
            f"{algorithm.value} takes a {_DIGEST_LENGTH}-byte SHA-256 digest, "
            f"not {len(data)} bytes",
            hint="hash the message with SHA-256, or sign it with ecdsa-sha256",
        )
    return data


def check_aes(key_id: str, kind: KeyKind) -> None:
    if kind is not KeyKind.AES_256:
        raise not_aes(key_id, kind)


def not_aes(key_id: str, kind: KeyKind) -> KeyKindMismatch:
    """The error for AES-256-GCM asked of a key of another `kind`."""
    return KeyKindMismatch(
        f"key {key_id!r} is a {kind.value} key and cannot do AES-256-GCM",
        hint="use an aes-256 key (or a key derived from an HMAC key)",
    )


def hmac_sha256(secret: bytes, data: bytes) -> bytes:
    return hmac.digest(secret, data, "sha256")


def sign_asymmetric(private: PrivateKey, algorithm: SignAlgorithm, data: bytes) -> bytes:
    """Sign `data` with a key pair; `algorithm` fits the key (see `check_algorithm`)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, utils

    if isinstance(private, ec.EllipticCurvePrivateKey):
        digest = sha256_digest(algorithm, data)
        return private.sign(digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    return private.sign(data, _rsa_padding(algorithm), hashes.SHA256())


def verify_asymmetric(
    public: PublicKey, algorithm: SignAlgorithm, data: bytes, signature: bytes
) -> bool:
    """Whether `signature` verifies; `algorithm` fits the key (see `check_algorithm`)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, utils

    try:
        if isinstance(public, ec.EllipticCurvePublicKey):
            digest = sha256_digest(algorithm, data)
            public.verify(signature, digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
        else:
            public.verify(signature, data, _rsa_padding(algorithm, verify=True), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


def gcm_encrypt(key_id: str, secret: bytes, iv: bytes, aad: bytes, plaintext: bytes) -> bytes:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    _check_iv(key_id, iv)
    return AESGCM(secret).encrypt(iv, plaintext, aad)


def gcm_decrypt(key_id: str, secret: bytes, iv: bytes, aad: bytes, ciphertext: bytes) -> bytes:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    _check_iv(key_id, iv)
    if len(ciphertext) < GCM_TAG_LENGTH:
        raise KeyOperationFailed(
            f"ciphertext for key {key_id!r} is shorter than the {GCM_TAG_LENGTH}-byte GCM tag"
        )
    try:
        return AESGCM(secret).decrypt(iv, ciphertext, aad)
    except InvalidTag:
        raise KeyOperationFailed(
            f"AES-256-GCM tag does not verify for key {key_id!r}",
            hint="the ciphertext, IV or AAD was altered, or another key encrypted it",
        ) from None


def _check_iv(key_id: str, iv: bytes) -> None:
    if not 8 <= len(iv) <= 128:
        raise KeyOperationFailed(
            f"IV for key {key_id!r} is {len(iv)} bytes", hint="use a 12-byte random IV"
        )


def _rsa_padding(algorithm: SignAlgorithm, *, verify: bool = False) -> AsymmetricPadding:
    """PKCS#1 v1.5, or PSS with MGF1-SHA256: salt of the digest length when signing (what tokens
    and TPMs produce), any salt length when verifying."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    if algorithm is SignAlgorithm.RSA_PSS_SHA256:
        salt = padding.PSS.AUTO if verify else padding.PSS.DIGEST_LENGTH
        return padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=salt)
    return padding.PKCS1v15()


def load_pkcs8(key_id: str, kind: KeyKind, der: bytes) -> PrivateKey:
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
    if (
        kind is KeyKind.EC_P256
        and isinstance(private, ec.EllipticCurvePrivateKey)
        and isinstance(private.curve, ec.SECP256R1)
    ):
        return private
    if (
        kind is KeyKind.RSA_2048
        and isinstance(private, rsa.RSAPrivateKey)
        and private.key_size == 2048
    ):
        return private
    raise KeyOperationFailed(f"key {key_id!r} is not a {kind.value} key")


def load_public_der(key_id: str, der: bytes) -> PublicKey:
    """The public key object of a key pair's DER SubjectPublicKeyInfo (EC or RSA)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    public = serialization.load_der_public_key(der)
    if not isinstance(public, (ec.EllipticCurvePublicKey, rsa.RSAPublicKey)):
        raise KeyOperationFailed(f"the public key of key {key_id!r} is neither EC nor RSA")
    return public
