"""TLS client authentication signed outside OpenSSL (`firmware.http.delegated_tls`).

Against a real server (Python's `ssl`, client certificates required, a test CA): the handshake
succeeds on TLS 1.3 and 1.2 with the client key held only by a Python signer, the server sees the
client certificate, and an HTTP request gets its answer. A wrong CA, a wrong host name and a
failing signer fail the connect with `ExchangeFailed(Failure.TLS)`; the signer runs off the
event loop. The session alone is driven against an `ssl.SSLObject` over memory BIOs (no sockets).
"""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
import time
from collections.abc import Callable

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa, utils

from firmware.errors import NotSupported
from firmware.executor import BoundedExecutor
from firmware.http.client import HttpClient
from firmware.http.delegated_tls import DelegatedTlsEndpoint, TlsClientSession, TlsFailed
from firmware.http.errors import ExchangeFailed, Failure, Phase
from tests.peers.mutual_tls import HOST, MutualTlsCa, MutualTlsServer


class SoftwareSigner:
    """A client key in memory that signs digests, counting them (like a key service would)."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.delay_s = delay_s
        self.digests: list[bytes] = []

    def __call__(self, digest: bytes) -> bytes:
        self.digests.append(digest)
        time.sleep(self.delay_s)  # a TPM or token takes its time; this runs in the executor
        return self.key.sign(digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))


def endpoint(
    port: int,
    ca: MutualTlsCa,
    chain: bytes,
    signer: Callable[[bytes], bytes],
    executor: BoundedExecutor,
    host: str = HOST,
) -> DelegatedTlsEndpoint:
    return DelegatedTlsEndpoint(
        host, port, lambda name: TlsClientSession(name, ca.pem, chain, signer), executor.run
    )


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2])
async def test_request_with_delegated_client_key_is_answered(version: ssl.TLSVersion) -> None:
    ca, signer, executor = MutualTlsCa.generate(), SoftwareSigner(), BoundedExecutor()
    chain = ca.issue("device-1", signer.key.public_key())
    async with MutualTlsServer(ca.server_context(maximum_version=version)) as server:
        client = HttpClient(endpoint(server.port, ca, chain, signer, executor))
        answer = await client.request("GET", "/devices/device-1")
        again = await client.request("GET", "/devices/device-1")
    assert (answer.status, answer.body) == (200, b"hello device-1")
    assert again.body == b"hello device-1"
    assert server.clients == ["device-1", "device-1"]
    assert server.versions == [version.name.replace("_", ".")] * 2
    assert [len(digest) for digest in signer.digests] == [32, 32]  # one signature per handshake
    executor.shutdown()


async def test_signer_runs_off_the_event_loop() -> None:
    ca, signer, executor = MutualTlsCa.generate(), SoftwareSigner(delay_s=0.3), BoundedExecutor()
    chain = ca.issue("device-1", signer.key.public_key())
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    async with MutualTlsServer(ca.server_context()) as server:
        ticker = asyncio.create_task(tick())
        started = time.monotonic()
        answer = await HttpClient(endpoint(server.port, ca, chain, signer, executor)).request(
            "GET", "/"
        )
        elapsed = time.monotonic() - started
        ticker.cancel()
    assert answer.status == 200
    assert elapsed >= 0.3
    assert ticks >= 15  # ticking every 10 ms all through the 0.3 s signature


async def test_wrong_ca_fails_the_handshake() -> None:
    ca, signer, executor = MutualTlsCa.generate(), SoftwareSigner(), BoundedExecutor()
    chain = ca.issue("device-1", signer.key.public_key())
    stranger = MutualTlsCa.generate("another root")
    async with MutualTlsServer(stranger.server_context()) as server:
        client = HttpClient(endpoint(server.port, ca, chain, signer, executor))
        with pytest.raises(ExchangeFailed) as failed:
            await client.request("GET", "/")
    assert (failed.value.failure, failed.value.phase) == (Failure.TLS, Phase.CONNECT)
    assert "certificate verify failed: self-signed certificate in certificate chain" in (
        failed.value.detail
    )
    assert signer.digests == []  # nothing signed for a server we do not trust
    assert server.clients == []


@pytest.mark.parametrize(
    ("names", "host", "verdict"),
    [
        ([x509.DNSName("hub.example")], HOST, "IP address mismatch"),
        ([x509.IPAddress(ipaddress.ip_address(HOST))], "localhost", "hostname mismatch"),
    ],
)
async def test_wrong_host_name_fails_the_handshake(
    names: list[x509.GeneralName], host: str, verdict: str
) -> None:
    ca, signer, executor = MutualTlsCa.generate(), SoftwareSigner(), BoundedExecutor()
    chain = ca.issue("device-1", signer.key.public_key())
    async with MutualTlsServer(ca.server_context(names)) as server:
        client = HttpClient(endpoint(server.port, ca, chain, signer, executor, host=host))
        with pytest.raises(ExchangeFailed) as failed:
            await client.request("GET", "/")
    assert failed.value.failure is Failure.TLS
    assert f"certificate verify failed: {verdict}" in failed.value.detail
    assert signer.digests == []


async def test_failing_signer_fails_the_connect_with_its_error_named() -> None:
    ca, executor = MutualTlsCa.generate(), BoundedExecutor()
    key = ec.generate_private_key(ec.SECP256R1())
    chain = ca.issue("device-1", key.public_key())

    def broken(digest: bytes) -> bytes:
        raise NotSupported("key backend 'tpm' does not support signing with ecdsa-sha256-digest")

    async with MutualTlsServer(ca.server_context()) as server:
        client = HttpClient(endpoint(server.port, ca, chain, broken, executor))
        with pytest.raises(ExchangeFailed) as failed:
            await client.request("GET", "/")
    assert (failed.value.failure, failed.value.phase) == (Failure.TLS, Phase.CONNECT)
    assert "signing with the client key failed" in failed.value.detail
    assert "does not support signing with ecdsa-sha256-digest" in failed.value.detail
    assert isinstance(failed.value.__cause__, NotSupported)


async def test_signature_by_another_key_is_refused_by_the_server() -> None:
    ca, signer, executor = MutualTlsCa.generate(), SoftwareSigner(), BoundedExecutor()
    impostor = ca.issue("device-1", ec.generate_private_key(ec.SECP256R1()).public_key())
    async with MutualTlsServer(ca.server_context(maximum_version=ssl.TLSVersion.TLSv1_2)) as server:
        client = HttpClient(endpoint(server.port, ca, impostor, signer, executor))
        with pytest.raises(ExchangeFailed) as failed:
            await client.request("GET", "/")
    assert failed.value.failure is Failure.TLS  # the server hangs up on a bad CertificateVerify
    assert server.clients == []


def test_rsa_client_certificate_is_not_supported() -> None:
    ca = MutualTlsCa.generate()
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    chain = ca.issue("device-1", rsa_key.public_key())
    with pytest.raises(NotSupported, match="EC P-256 keys only"):
        TlsClientSession(HOST, ca.pem, chain, SoftwareSigner())


def test_certificate_that_is_not_pem_is_refused() -> None:
    ca = MutualTlsCa.generate()
    with pytest.raises(TlsFailed, match="the client certificate is not PEM"):
        TlsClientSession(HOST, ca.pem, b"not a certificate", SoftwareSigner())
    with pytest.raises(TlsFailed, match="the CA bundle holds no certificate"):
        TlsClientSession(HOST, b"", ca.pem, SoftwareSigner())


def test_session_alone_talks_to_an_ssl_object_over_memory() -> None:
    """The sans-IO session against Python's ssl server object: bytes in, bytes out."""
    ca, signer = MutualTlsCa.generate(), SoftwareSigner()
    chain = ca.issue("device-1", signer.key.public_key())
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    server = ca.server_context().wrap_bio(incoming, outgoing, server_side=True)
    session = TlsClientSession(HOST, ca.pem, chain, signer)
    server_done = False
    for _ in range(10):
        client_done = session.step()
        incoming.write(session.pending_output())
        if not server_done:
            try:
                server.do_handshake()
                server_done = True
            except ssl.SSLWantReadError:
                pass
        session.feed(outgoing.read())
        if client_done and server_done:
            break
    assert session.established and server_done
    assert session.version == "TLSv1.3"
    cert = x509.load_der_x509_certificate(server.getpeercert(binary_form=True))
    assert cert.public_key() == signer.key.public_key()
    session.encrypt(b"ping")
    incoming.write(session.pending_output())
    assert server.read(4) == b"ping"
    server.write(b"pong")
    session.feed(outgoing.read())
    assert session.decrypt() == b"pong"
    assert not session.peer_closed
    with pytest.raises(ssl.SSLWantReadError):
        server.read(1)
    session.close()
    incoming.write(session.pending_output())
    assert server.read(1) == b""  # the server saw close_notify
    server.unwrap()  # answers with its own close_notify
    session.feed(outgoing.read())
    assert session.decrypt() == b""
    assert session.peer_closed
