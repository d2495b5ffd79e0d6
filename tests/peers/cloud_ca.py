"""The test CA of the cloud peers: a root that signs the peers' server certificates (IP SAN
127.0.0.1, DNS localhost) and the X.509 devices' client certificates, saved as PEM files so a
device under test, or the sim board, can trust it.

`CertificateAuthority.generate(name)` makes a root (also a device group's CA in a test),
`.load(directory)` reads one saved by `.save(directory)`; `self_signed(name)` makes a device
certificate for thumbprint enrollments. Keys are EC P-256.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_CERT_FILE = "ca.pem"
CA_KEY_FILE = "ca-key.pem"
VALIDITY = datetime.timedelta(days=30)
BACKDATE = datetime.timedelta(minutes=5)

PublicKey = CertificatePublicKeyTypes  # a device key may be RSA (TPM, token) or EC


@dataclass(frozen=True)
class IssuedCert:
    """A certificate and, when the CA made the key, its private key."""

    certificate: x509.Certificate
    private_key: ec.EllipticCurvePrivateKey | None

    def cert_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        if self.private_key is None:
            raise ValueError("the key of this certificate was given by the caller")
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def write(self, cert_path: Path, key_path: Path | None = None) -> None:
        cert_path.write_bytes(self.cert_pem())
        if key_path is not None:
            key_path.write_bytes(self.key_pem())
            key_path.chmod(0o600)


def thumbprint_sha1(certificate: x509.Certificate) -> str:
    """IoT Hub's primary thumbprint form: upper-case hex SHA-1 of the DER certificate."""
    return hashlib.sha1(certificate.public_bytes(serialization.Encoding.DER)).hexdigest().upper()


def thumbprint_sha256(certificate: x509.Certificate) -> str:
    return hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).hexdigest().upper()


def common_name(certificate: x509.Certificate) -> str | None:
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else None


def issued_by(certificate: x509.Certificate, ca: x509.Certificate) -> bool:
    """Whether `ca` signed `certificate` (names and signature checked)."""
    try:
        certificate.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


LOOPBACK_NAMES: tuple[x509.GeneralName, ...] = (
    x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")),
    x509.DNSName("localhost"),
)


def _name(text: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])


def _builder(subject: str, issuer: x509.Name, public_key: PublicKey) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + VALIDITY)
    )


def self_signed(name: str) -> IssuedCert:
    """A self-signed device certificate with CN `name` (X.509 thumbprint attestation)."""
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = (
        _builder(name, _name(name), key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return IssuedCert(certificate, key)


@dataclass(frozen=True)
class CertificateAuthority:
    """A root CA that issues server and client certificates."""

    certificate: x509.Certificate
    private_key: ec.EllipticCurvePrivateKey

    @classmethod
    def generate(cls, name: str = "edgekeeper test cloud CA") -> CertificateAuthority:
        key = ec.generate_private_key(ec.SECP256R1())
        public = key.public_key()
        certificate = (
            _builder(name, _name(name), public)
            .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(certificate, key)

    @classmethod
    def load(cls, directory: Path) -> CertificateAuthority:
        certificate = x509.load_pem_x509_certificate((directory / CA_CERT_FILE).read_bytes())
        key = serialization.load_pem_private_key(
            (directory / CA_KEY_FILE).read_bytes(), password=None
        )
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{directory / CA_KEY_FILE} does not hold an EC key")
        return cls(certificate, key)

    def save(self, directory: Path) -> Path:
        """Write ca.pem and ca-key.pem (0600) into `directory`; return the path of ca.pem."""
        IssuedCert(self.certificate, self.private_key).write(
            directory / CA_CERT_FILE, directory / CA_KEY_FILE
        )
        return directory / CA_CERT_FILE

    def cert_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def issue_server_cert(
        self, name: str = "localhost", names: Sequence[x509.GeneralName] = LOOPBACK_NAMES
    ) -> IssuedCert:
        """A TLS server certificate for `names` (default 127.0.0.1 and localhost)."""
        key = ec.generate_private_key(ec.SECP256R1())
        certificate = (
            self._issued(name, key.public_key())
            .add_extension(x509.SubjectAlternativeName(list(names)), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(self.private_key, hashes.SHA256())
        )
        return IssuedCert(certificate, key)

    def issue_client_cert(
        self, common_name: str, public_key: PublicKey | None = None
    ) -> IssuedCert:
        """A TLS client certificate with CN `common_name` for `public_key`, or for a new key
        (then returned with it)."""
        key = None
        if public_key is None:
            key = ec.generate_private_key(ec.SECP256R1())
            public_key = key.public_key()
        certificate = (
            self._issued(common_name, public_key)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(self.private_key, hashes.SHA256())
        )
        return IssuedCert(certificate, key)

    def _issued(self, subject: str, public_key: PublicKey) -> x509.CertificateBuilder:
        return (
            _builder(subject, self.certificate.subject, public_key)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.private_key.public_key()),
                critical=False,
            )
        )
