"""A TLS server that requires client certificates, and the test CA behind both sides.

`MutualTlsCa.generate()` makes an EC P-256 root; `issue(name, public_key)` certifies any public
key (a key in a file, on a token or in a TPM); `server_context()` is a Python `ssl` server context
with the CA's server certificate (IP SAN 127.0.0.1 and DNS localhost unless told otherwise) that
requires a client certificate from this CA. `MutualTlsServer` answers every HTTP request with 200
and the client certificate's common name, and records the versions and names it saw.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import NameOID

HOST = "127.0.0.1"
_VALIDITY = datetime.timedelta(days=1)
_BACKDATE = datetime.timedelta(minutes=5)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


@dataclass(frozen=True)
class MutualTlsCa:
    """A root CA for one test: its key and self-signed certificate."""

    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    @classmethod
    def generate(cls, name: str = "edgekeeper test root") -> MutualTlsCa:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(_name(name))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(now + _VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        return cls(key, certificate)

    @property
    def pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def issue(
        self,
        common_name: str,
        public_key: CertificatePublicKeyTypes,
        names: Sequence[x509.GeneralName] = (),
    ) -> bytes:
        """A leaf certificate for `public_key`, PEM."""
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(self.certificate.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(now + _VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        )
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        certificate = builder.sign(self.key, hashes.SHA256())
        return certificate.public_bytes(serialization.Encoding.PEM)

    def server_context(
        self,
        names: Sequence[x509.GeneralName] = (
            x509.IPAddress(ipaddress.ip_address(HOST)),
            x509.DNSName("localhost"),
        ),
        maximum_version: ssl.TLSVersion = ssl.TLSVersion.MAXIMUM_SUPPORTED,
    ) -> ssl.SSLContext:
        """A server context: this CA's certificate for `names`, client certificates required."""
        key = ec.generate_private_key(ec.SECP256R1())
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.maximum_version = maximum_version
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cadata=self.pem.decode("ascii"))
        with tempfile.TemporaryDirectory(prefix="mutual-tls-") as directory:
            chain, secret = Path(directory, "server.pem"), Path(directory, "server-key.pem")
            chain.write_bytes(self.issue("server", key.public_key(), names))
            secret.write_bytes(
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
            context.load_cert_chain(chain, secret)
        return context


@dataclass
class MutualTlsServer:
    """An HTTPS server on 127.0.0.1 answering 200 with the client's common name."""

    context: ssl.SSLContext
    port: int = 0
    clients: list[str] = field(default_factory=list)  # common names, one per connection
    versions: list[str] = field(default_factory=list)
    _server: asyncio.Server | None = None

    async def __aenter__(self) -> MutualTlsServer:
        self._server = await asyncio.start_server(self._serve, HOST, 0, ssl=self.context)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ssl_object = writer.get_extra_info("ssl_object")
        certificate = x509.load_der_x509_certificate(ssl_object.getpeercert(binary_form=True))
        name = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        self.clients.append(str(name))
        self.versions.append(ssl_object.version())
        try:
            await reader.readuntil(b"\r\n\r\n")
            body = f"hello {name}".encode()
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()
        finally:
            writer.close()
