"""Certificate signers: who signs a certificate, with a software key or through the key service.

`SoftwareSigner` holds a `cryptography` private key (an operator-provided Edge CA key file) and uses
`CertificateBuilder.sign`. `KeyServiceSigner` signs with a key-service handle in any backend: the
builder is first signed with a throwaway key of the same type to obtain the TBSCertificate bytes
(their signature AlgorithmIdentifier is the same), the key service signs those bytes, and the
Certificate is framed in DER (`firmware.certs.der`) and parsed back with `cryptography`.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Protocol

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from firmware.certs import der
from firmware.certs.errors import CertificateIssueFailed
from firmware.keys.backend import KeyKind, SignAlgorithm

if TYPE_CHECKING:
    from firmware.executor import BoundedExecutor
    from firmware.keys.handles import KeyHandle
    from firmware.keys.service import KeyService

#: The keys a CA signs with here (SHA-256 signatures): EC P-256 and RSA pairs.
SigningPrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
SigningPublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey

_throwaway_keys: dict[KeyKind, SigningPrivateKey] = {}
_throwaway_lock = threading.Lock()


class CertificateSigner(Protocol):
    """Signs certificate builders; knows its public key and where its key lives."""

    backend: str

    async def public_key(self) -> SigningPublicKey: ...

    async def sign(self, builder: x509.CertificateBuilder) -> x509.Certificate: ...


class SoftwareSigner:
    """A private key held in memory (operator-provided key file); signs in the executor."""

    backend = "file (operator)"

    def __init__(self, private_key: SigningPrivateKey, executor: BoundedExecutor) -> None:
        self._private = private_key
        self._executor = executor

    async def public_key(self) -> SigningPublicKey:
        return self._private.public_key()

    async def sign(self, builder: x509.CertificateBuilder) -> x509.Certificate:
        return await self._executor.run(builder.sign, self._private, hashes.SHA256())


class KeyServiceSigner:
    """A key-service key pair (EC P-256 or RSA-2048) in any backend, used by handle."""

    def __init__(
        self,
        keys: KeyService,
        handle: KeyHandle,
        kind: KeyKind,
        backend: str,
        executor: BoundedExecutor,
    ) -> None:
        if kind not in (KeyKind.EC_P256, KeyKind.RSA_2048):
            raise CertificateIssueFailed(
                f"a {kind.value} key cannot sign certificates",
                hint="use an ec-p256 or rsa-2048 key",
            )
        self._keys = keys
        self._handle = handle
        self._kind = kind
        self.backend = backend
        self._executor = executor

    async def public_key(self) -> SigningPublicKey:
        key = serialization.load_der_public_key(await self._keys.public_key(self._handle))
        if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
            raise CertificateIssueFailed(
                f"the key service returned a {type(key).__name__} for a {self._kind.value} key",
                hint="check the key's backend in [keys.backends]",
            )
        return key

    async def sign(self, builder: x509.CertificateBuilder) -> x509.Certificate:
        tbs = await self._executor.run(_tbs_bytes, builder, self._kind)
        if self._kind is KeyKind.EC_P256:
            algorithm, identifier = SignAlgorithm.ECDSA_SHA256, der.ECDSA_WITH_SHA256
        else:
            algorithm, identifier = SignAlgorithm.RSA_PKCS1_SHA256, der.SHA256_WITH_RSA
        signature = await self._keys.sign(self._handle, algorithm, tbs)
        return x509.load_der_x509_certificate(der.certificate(tbs, identifier, signature))


def _tbs_bytes(builder: x509.CertificateBuilder, kind: KeyKind) -> bytes:
    """The TBSCertificate DER `builder` encodes for an issuer key of `kind` (blocking)."""
    return builder.sign(_throwaway(kind), hashes.SHA256()).tbs_certificate_bytes


def _throwaway(kind: KeyKind) -> SigningPrivateKey:
    """A process-wide key of `kind` used only to let `cryptography` encode a TBSCertificate."""
    with _throwaway_lock:
        key = _throwaway_keys.get(kind)
        if key is None:
            if kind is KeyKind.EC_P256:
                key = ec.generate_private_key(ec.SECP256R1())
            else:
                key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            _throwaway_keys[kind] = key
        return key
