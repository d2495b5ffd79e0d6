"""The `cryptography` calls of the certificate service: PEM and DER forms, issuer checks, parsing
stored and operator-provided certificates and keys, and the key pairs of module certificates.

The service imports this module (and `profiles`, `signing`) only when it first issues, renews,
checks or hands out a certificate, so that a daemon whose stored certificates are in order idles
without `cryptography` (see `firmware.certs.stored`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from firmware.certs.errors import CertificateIssueFailed

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.types import (
        PrivateKeyTypes,
        PublicKeyTypes,
    )


def load_pem(text: str) -> x509.Certificate:
    """The certificate of PEM `text` (ValueError if it holds none)."""
    return x509.load_pem_x509_certificate(text.encode("ascii"))


def load_pem_chain(text: str) -> list[x509.Certificate]:
    """Every certificate of PEM `text`, in order (ValueError if it holds none)."""
    return x509.load_pem_x509_certificates(text.encode("ascii"))


def load_private_key(text: str) -> PrivateKeyTypes:
    """The unencrypted PEM private key of `text` (ValueError/TypeError otherwise)."""
    return serialization.load_pem_private_key(text.encode("ascii"), password=None)


def issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except Exception:
        return False
    return True


def check_issued(cert: x509.Certificate, issuer: x509.Certificate, what: str) -> None:
    if not issued_by(cert, issuer):
        raise CertificateIssueFailed(
            f"certificate {what!r} does not verify against its issuer",
            hint="the signing key does not match the issuer certificate; check [keys.backends]",
        )


def leaf_key() -> tuple[ec.EllipticCurvePrivateKey, str]:
    """A new EC P-256 key pair for a module certificate, and its private key as PKCS#8 PEM
    (blocking: runs in the executor)."""
    private = ec.generate_private_key(ec.SECP256R1())
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return private, pem.decode("ascii")


def pem_of(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def spki_of(public_key: PublicKeyTypes) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
