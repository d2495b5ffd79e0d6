"""A TLS server that requires client certificates, and the test CA behind both sides.

`MutualTlsCa.generate()` makes an EC P-256 root (the cloud peers' test CA,
`tests.peers.cloud_ca`); `issue(name, public_key)` certifies any public key (a key in a file, on
a token or in a TPM); `server_context()` is a Python `ssl` server context
with the CA's server certificate (IP SAN 127.0.0.1 and DNS localhost unless told otherwise) that
requires a client certificate from this CA. `MutualTlsServer` answers every HTTP request with 200
and the client certificate's common name, and records the versions and names it saw.
"""

from __future__ import annotations

import asyncio
import ssl
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID

from tests.peers.cloud_ca import LOOPBACK_NAMES, CertificateAuthority, PublicKey

HOST = "127.0.0.1"


@dataclass(frozen=True)
class MutualTlsCa:
    """The test CA (`tests.peers.cloud_ca.CertificateAuthority`) as the TLS tests use it: PEM in,
    PEM out, and a server context that requires a client certificate it issued."""

    authority: CertificateAuthority

    @classmethod
    def generate(cls, name: str = "edgekeeper test root") -> MutualTlsCa:
        return cls(CertificateAuthority.generate(name))

    @property
    def pem(self) -> bytes:
        return self.authority.cert_pem()

    def issue(self, common_name: str, public_key: PublicKey) -> bytes:
        """A client certificate for `public_key`, PEM."""
        return self.authority.issue_client_cert(common_name, public_key).cert_pem()

    def server_context(
        self,
        names: Sequence[x509.GeneralName] = LOOPBACK_NAMES,
        maximum_version: ssl.TLSVersion = ssl.TLSVersion.MAXIMUM_SUPPORTED,
    ) -> ssl.SSLContext:
        """A server context: this CA's certificate for `names`, client certificates required."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.maximum_version = maximum_version
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cadata=self.pem.decode("ascii"))
        with tempfile.TemporaryDirectory(prefix="mutual-tls-") as directory:
            chain, secret = Path(directory, "server.pem"), Path(directory, "server-key.pem")
            self.authority.issue_server_cert("server", names).write(chain, secret)
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
