"""`DeviceCredentials`: how the device proves who it is to DPS and its hub, from `[provisioning]`.

Two ways, never both:
- a shared access signature: `authorize(audience)` gives the `Authorization` header value,
  signed with the device key wherever it lives: a value or file in the configuration (HMAC in
  software, as the key is in the 0600 configuration already), a key of the key service (HMAC in
  its backend: file, PKCS#11 or TPM), or the TPM key DPS put in during attestation (HMAC in the
  TPM);
- an X.509 certificate: `authorize` gives None and the TLS client handshake carries the
  identity (`endpoint(host, port)`).

`endpoint(host, port)` makes the HTTPS endpoint to reach DPS or the hub: the system's trusted CAs
plus `trust_bundle_cert` (how a nested or test gateway trusts its upstream), and the client
certificate for X.509.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from firmware.errors import ConfigError
from firmware.http.client import Endpoint, TcpEndpoint
from firmware.identity import sas

SasSigner = Callable[[bytes], Awaitable[bytes]]
"""HMAC-SHA256 of the given bytes with the device key, wherever the key lives."""


@dataclass(frozen=True)
class DeviceCredentials:
    """What the device signs SAS tokens with (`signer`), or its TLS client identity (`tls`)."""

    signer: SasSigner | None
    tls: ssl.SSLContext
    endpoint_factory: Callable[[str, int], Endpoint] | None = None
    clock: Callable[[], float] = time.time

    async def authorize(self, audience: str, key_name: str | None = None) -> str | None:
        """The `Authorization` header for `audience` (None for X.509: TLS carries it)."""
        if self.signer is None:
            return None
        expiry = int(self.clock()) + sas.TOKEN_LIFETIME_S
        signature = await self.signer(sas.string_to_sign(audience, expiry))
        return sas.token(audience, signature, expiry, key_name)

    def endpoint(self, host: str, port: int) -> Endpoint:
        if self.endpoint_factory is not None:
            return self.endpoint_factory(host, port)
        return TcpEndpoint(host, port, tls=self.tls)


def software_signer(key: bytes) -> SasSigner:
    """A signer for a key given in the configuration."""

    async def sign(data: bytes) -> bytes:
        return hmac.digest(key, data, "sha256")

    return sign


def trust_context(trust_bundle: str | None) -> ssl.SSLContext:
    """TLS to the cloud: the system's CAs, plus `trust_bundle_cert` when set."""
    context = ssl.create_default_context()
    if trust_bundle is not None:
        path = file_path(trust_bundle, "trust_bundle_cert")
        try:
            context.load_verify_locations(cafile=str(path))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"trust_bundle_cert {path}: cannot be read as PEM certificates ({exc})",
                hint="point trust_bundle_cert at a PEM file of CA certificates",
            ) from None
    return context


def with_client_certificate(context: ssl.SSLContext, cert: str, key: str, field: str) -> None:
    """Add the X.509 identity in files `cert` and `key` (file:// URIs) to `context`."""
    cert_path = file_path(cert, f"{field}.identity_cert")
    key_path = file_path(key, f"{field}.identity_pk")
    try:
        context.load_cert_chain(certfile=str(cert_path), keyfile=str(key_path))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"[{field}] identity_cert {cert_path} and identity_pk {key_path} cannot be used "
            f"together ({exc})",
            hint="give the PEM certificate (chain) and the PEM private key it was issued for",
        ) from None


def file_path(uri: str, field: str) -> Path:
    """The path of a `file://` URI; `ConfigError` naming `field` otherwise."""
    if not uri.startswith("file://"):
        raise ConfigError(
            f"{field} {uri!r} is not a file:// URI", hint='use "file:///absolute/path"'
        )
    return Path(uri[len("file://") :])


def read_pem(uri: str, field: str) -> bytes:
    """The PEM text of a `file://` certificate file."""
    data = _read(uri, field, "the certificate file")
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise ConfigError(f"{field}: {uri} holds no PEM certificate", hint="give a PEM file")
    return data


def read_key_file(uri: str, field: str) -> bytes:
    """A symmetric key from a file: base64 text (as the hub shows keys) or the raw bytes."""
    data = _read(uri, field, "the key file")
    try:
        decoded = base64.b64decode(data.strip(), validate=True)
    except (binascii.Error, ValueError):
        decoded = b""
    key = decoded or data
    if not key:
        raise ConfigError(f"{field}: the key file {uri} is empty", hint="write the key into it")
    return key


def _read(uri: str, field: str, what: str) -> bytes:
    path = file_path(uri, field)
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"{field}: cannot read {what} {path} ({exc.strerror})",
            hint="check the path and that the daemon may read it (mode 0600, owned by it)",
        ) from None
