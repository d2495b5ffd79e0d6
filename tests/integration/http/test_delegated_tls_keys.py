"""TLS client authentication with the client key in each key backend: a file, a SoftHSM2 token,
swtpm. The key never leaves its backend: the handshake's digest goes to `KeyBackend.sign` with
`ecdsa-sha256-digest`, from the executor. A real server (Python's `ssl`, client certificates
required) sees the certificate issued for the backend's public key and answers the request.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from firmware.executor import BoundedExecutor
from firmware.http.client import HttpClient
from firmware.http.delegated_tls import DelegatedTlsEndpoint, TlsClientSession
from firmware.keys.backend import KeyBackend, KeyKind, SignAlgorithm
from tests.peers.mutual_tls import HOST, MutualTlsCa, MutualTlsServer

KEY_ID = "device-identity"


def _file(request: pytest.FixtureRequest, tmp_path: Path) -> KeyBackend:
    from firmware.keys.file import FileBackend

    return FileBackend(tmp_path / "keys")


def _pkcs11(request: pytest.FixtureRequest, tmp_path: Path) -> KeyBackend:
    from firmware.keys.pkcs11 import Pkcs11Backend

    softhsm = request.getfixturevalue("softhsm")
    token = softhsm.new_token("delegated-tls")
    return Pkcs11Backend(softhsm.module, token_label=token.label, pin=token.user_pin)


def _tpm(request: pytest.FixtureRequest, tmp_path: Path) -> KeyBackend:
    from firmware.keys.tpm import TpmBackend

    return TpmBackend(request.getfixturevalue("swtpm").tcti, tmp_path / "tpm-keys")


BACKENDS: dict[str, Callable[[pytest.FixtureRequest, Path], KeyBackend]] = {
    "file": _file,
    "pkcs11": _pkcs11,
    "tpm": _tpm,
}


@pytest.fixture(
    params=[
        "file",
        pytest.param("pkcs11", marks=pytest.mark.softhsm),
        pytest.param("tpm", marks=pytest.mark.swtpm),
    ]
)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[KeyBackend]:
    opened = BACKENDS[request.param](request, tmp_path)
    yield opened
    opened.close()


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2])
async def test_client_key_in_backend_authenticates(
    backend: KeyBackend, version: ssl.TLSVersion
) -> None:
    backend.create(KEY_ID, KeyKind.EC_P256)
    public = serialization.load_der_public_key(backend.public_key(KEY_ID))
    ca, executor = MutualTlsCa.generate(), BoundedExecutor()
    chain = ca.issue(f"device-on-{backend.name}", public)
    digests: list[bytes] = []

    def sign_digest(digest: bytes) -> bytes:
        digests.append(digest)
        return backend.sign(KEY_ID, SignAlgorithm.ECDSA_SHA256_DIGEST, digest)

    def session(host: str) -> TlsClientSession:
        return TlsClientSession(host, ca.pem, chain, sign_digest)

    async with MutualTlsServer(ca.server_context(maximum_version=version)) as server:
        endpoint = DelegatedTlsEndpoint(HOST, server.port, session, executor.run)
        answer = await HttpClient(endpoint).request("GET", "/")
    executor.shutdown()
    assert (answer.status, answer.body) == (200, f"hello device-on-{backend.name}".encode())
    assert server.clients == [f"device-on-{backend.name}"]
    assert server.versions == [version.name.replace("_", ".")]
    assert len(digests) == 1
