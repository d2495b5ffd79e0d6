"""`provisioning_setup`: what `[provisioning]` asks for, built once: the identity source, the
device's credentials and the hub side of the module identities.

The one place a provisioning source and an attestation method are picked from the configuration:
- `source = "none"`: a local identity (the host name), no hub, no cloud call ever;
- `source = "manual"`: the hub and device id from a connection string or the settings, the
  device authenticating with its SAS key or its X.509 certificate;
- `source = "dps"`: DPS registration with a symmetric key, an X.509 certificate or the TPM; the
  hub then takes the same credentials (with TPM, the key DPS put into the TPM).
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, TypeVar

from firmware.config.schema import Config, KeyMaterial
from firmware.errors import ConfigError
from firmware.executor import BoundedExecutor, RunBlocking
from firmware.http.client import Deadlines, Endpoint
from firmware.identity import credentials as creds
from firmware.identity import sas
from firmware.identity.cloud import CloudCalls, HubIdentities
from firmware.identity.connection_string import parse_connection_string
from firmware.identity.device import DeviceIdentity, local_identity, settings_digest
from firmware.identity.dps import DpsRegistration
from firmware.identity.errors import CloudUnauthorized
from firmware.identity.provisioning import DpsSource, ManualSource, ProvisioningSource
from firmware.keys.backend import SignAlgorithm

if TYPE_CHECKING:
    from firmware.keys.service import KeyService

T = TypeVar("T")

#: How long a TLS handshake waits for the key service to sign.
HANDSHAKE_SIGN_S = 30.0
#: How long one DPS registration may poll before it counts as failed (and is tried later).
DPS_POLL_LIMIT_S = 300.0


class LocalSource:
    """`[provisioning] source = "none"`: the device is its host name and has no hub."""

    kind = "none"

    def __init__(self, hostname: str) -> None:
        self._hostname = hostname

    async def obtain(self) -> DeviceIdentity:
        return local_identity(self._hostname)

    async def cache_trusted(self) -> bool:
        return True


class HubModules:
    """`firmware.identity.modules.ModuleCloud` on the hub the device is provisioned to; a call
    refused for the device's credentials is reported to `refused` (which provisions again)."""

    def __init__(
        self,
        calls: CloudCalls,
        device: creds.DeviceCredentials,
        refused: Callable[[CloudUnauthorized], None],
    ) -> None:
        self._calls = calls
        self._device = device
        self._refused = refused
        self._hub: HubIdentities | None = None

    def point_at(self, identity: DeviceIdentity) -> None:
        self._hub = HubIdentities(
            self._calls, identity.hub, identity.device_id, self._device.authorize
        )

    async def create(self, module_id: str, managed_by: str) -> str:
        made = await self._guarded(lambda hub: hub.create(module_id))
        return made.generation_id

    async def set_keys(
        self, module_id: str, primary: bytes, secondary: bytes, managed_by: str
    ) -> None:
        await self._guarded(lambda hub: hub.set_keys(module_id, primary, secondary, managed_by))

    async def delete(self, module_id: str) -> None:
        await self._guarded(lambda hub: hub.delete(module_id))

    async def generations(self) -> dict[str, str]:
        modules = await self._guarded(lambda hub: hub.list())
        return {module.module_id: module.generation_id for module in modules}

    async def _guarded(self, call: Callable[[HubIdentities], Awaitable[T]]) -> T:
        assert self._hub is not None, "point_at comes first"
        try:
            return await call(self._hub)
        except CloudUnauthorized as exc:
            self._refused(exc)
            raise


@dataclass(frozen=True)
class ProvisioningSetup:
    """The source of the device identity, the digest of the settings it is cached under, and
    the hub side of the module identities (None without a hub)."""

    source: ProvisioningSource
    digest: str
    modules: HubModules | None
    handshakes: BoundedExecutor | None = None

    def close(self) -> None:
        """Stop the TLS handshake executor (the service is stopping)."""
        if self.handshakes is not None:
            self.handshakes.shutdown(wait=False)

    def point_at(self, identity: DeviceIdentity) -> None:
        """Aim the module identity calls at the hub and device of `identity`."""
        if self.modules is not None:
            self.modules.point_at(identity)


async def provisioning_setup(
    config: Config,
    keys: KeyService,
    run_blocking: RunBlocking,
    refused: Callable[[CloudUnauthorized], None],
) -> ProvisioningSetup:
    """The setup `config` asks for; `ConfigError` naming the field when it cannot be built."""
    settings = config.provisioning
    digest = settings_digest({"provisioning": asdict(settings), "hostname": config.hostname})
    if settings.source == "none":
        return ProvisioningSetup(LocalSource(config.hostname), digest, None)
    tls = await run_blocking(creds.trust_context, config.trust_bundle_cert)
    timeout = float(config.cloud_timeout_sec)
    calls = CloudCalls(
        lambda host, port: device.endpoint(host, port),
        deadlines=Deadlines(connect_s=min(timeout, 30.0), read_s=timeout, overall_s=timeout),
        retries=config.cloud_retries,
    )
    source: ProvisioningSource
    handshakes = BoundedExecutor(workers=1, queue=4)
    try:
        if settings.source == "manual":
            device, source = await _manual(config, keys, run_blocking, tls, handshakes)
        else:
            device, source = await _dps(config, keys, run_blocking, tls, calls, handshakes)
    except BaseException:
        handshakes.shutdown()
        raise
    return ProvisioningSetup(source, digest, HubModules(calls, device, refused), handshakes)


async def _manual(
    config: Config,
    keys: KeyService,
    run_blocking: RunBlocking,
    tls: ssl.SSLContext,
    handshakes: BoundedExecutor,
) -> tuple[creds.DeviceCredentials, ProvisioningSource]:
    settings = config.provisioning
    if settings.connection_string is not None:
        parts = parse_connection_string(settings.connection_string)
        signer = creds.software_signer(parts.shared_access_key)
        return creds.DeviceCredentials(signer, tls), ManualSource(parts.host_name, parts.device_id)
    auth = settings.authentication
    assert auth is not None and settings.iothub_hostname and settings.device_id  # validated
    source = ManualSource(settings.iothub_hostname, settings.device_id)
    if auth.method == "sas":
        assert auth.device_id_pk is not None
        field = "[provisioning.authentication] device_id_pk"
        signer = await _signer(auth.device_id_pk, field, keys, run_blocking)
        return creds.DeviceCredentials(signer, tls), source
    assert auth.identity_cert is not None and auth.identity_pk is not None
    device = await _x509(
        tls,
        auth.identity_cert,
        auth.identity_pk,
        "provisioning.authentication",
        keys,
        run_blocking,
        handshakes,
        config.trust_bundle_cert,
    )
    return device, source


async def _dps(
    config: Config,
    keys: KeyService,
    run_blocking: RunBlocking,
    tls: ssl.SSLContext,
    calls: CloudCalls,
    handshakes: BoundedExecutor,
) -> tuple[creds.DeviceCredentials, ProvisioningSource]:
    settings = config.provisioning
    attestation = settings.attestation
    assert attestation is not None and settings.id_scope is not None  # validated
    payload = await _payload(settings.payload.uri if settings.payload else None, run_blocking)
    host = settings.global_endpoint
    scope = settings.id_scope
    if attestation.method == "symmetric_key":
        assert attestation.symmetric_key is not None and attestation.registration_id is not None
        field = "[provisioning.attestation] symmetric_key"
        signer = await _signer(attestation.symmetric_key, field, keys, run_blocking)
        device = creds.DeviceCredentials(signer, tls)
        registration_id = attestation.registration_id
    elif attestation.method == "x509":
        assert attestation.identity_cert is not None and attestation.identity_pk is not None
        device = await _x509(
            tls,
            attestation.identity_cert,
            attestation.identity_pk,
            "provisioning.attestation",
            keys,
            run_blocking,
            handshakes,
            config.trust_bundle_cert,
        )
        cert = attestation.identity_cert
        named = attestation.registration_id
        registration_id = named if named else await run_blocking(_common_name, cert)
    else:
        return await _tpm(config, keys, run_blocking, tls, calls, payload)

    async def register() -> tuple[str, str, str | None]:
        registration = DpsRegistration(scope, registration_id, payload=payload)
        assigned = await calls.register(
            host,
            registration,
            lambda audience: device.authorize(audience, sas.DPS_KEY_NAME),
            None,
            DPS_POLL_LIMIT_S,
        )
        return assigned.hub, assigned.device_id, assigned.substatus

    return device, DpsSource(register)


async def _tpm(
    config: Config,
    keys: KeyService,
    run_blocking: RunBlocking,
    tls: ssl.SSLContext,
    calls: CloudCalls,
    payload: object | None,
) -> tuple[creds.DeviceCredentials, ProvisioningSource]:
    """DPS TPM attestation: the EK and SRK go with the first register; DPS's challenge is
    imported into the TPM's free auth key slot, the register signed with that new key, and only
    an assignment commits it (the key in force until then stays intact, see
    `firmware.tpm.activation`). The hub's tokens are HMACs the TPM computes with the committed
    key."""
    settings = config.provisioning
    assert settings.attestation is not None and settings.id_scope is not None  # validated
    index = config.tpm.auth_key_index
    named = settings.attestation.registration_id
    host, scope = settings.global_endpoint, settings.id_scope

    async def hub_signer(data: bytes) -> bytes:
        attestation = await keys.tpm_attestation(index)
        return await run_blocking(attestation.hmac, data)

    device = creds.DeviceCredentials(hub_signer, tls)

    async def register() -> tuple[str, str, str | None]:
        attestation = await keys.tpm_attestation(index)
        endorsement = await run_blocking(attestation.endorsement_key)
        storage_root = await run_blocking(attestation.storage_root_key)
        derived = await run_blocking(attestation.registration_id)
        registration_id = named if named else derived
        imported: list[int] = []

        async def import_challenge(blob: bytes) -> None:
            imported.append(await run_blocking(attestation.import_key, blob))

        async def sign(data: bytes) -> bytes:
            handle = imported[-1] if imported else None
            return await run_blocking(attestation.hmac, data, handle)

        challenged = creds.DeviceCredentials(sign, tls, clock=device.clock)
        registration = DpsRegistration(
            scope, registration_id, tpm=(endorsement, storage_root), payload=payload
        )
        assigned = await calls.register(
            host,
            registration,
            lambda audience: challenged.authorize(audience, sas.DPS_KEY_NAME),
            import_challenge,
            DPS_POLL_LIMIT_S,
        )
        if imported:
            await run_blocking(attestation.commit, imported[-1])
        return assigned.hub, assigned.device_id, assigned.substatus

    async def interrupted() -> bool:
        attestation = await keys.tpm_attestation(index)
        return await run_blocking(attestation.interrupted)

    return device, DpsSource(register, interrupted)


async def _signer(
    material: KeyMaterial, field: str, keys: KeyService, run_blocking: RunBlocking
) -> creds.SasSigner:
    """The SAS signer for a symmetric key given as a value, a file, or a key of the key service
    (a `pkcs11:` URI names the key by its `object=` label)."""
    if material.value is not None:
        return creds.software_signer(base64.b64decode(material.value))
    if material.uri is not None and material.uri.startswith("file://"):
        return creds.software_signer(await run_blocking(creds.read_key_file, material.uri, field))
    name = material.key if material.key is not None else _pkcs11_object(material.uri or "", field)
    handle = await keys.load(name)

    async def sign(data: bytes) -> bytes:
        return await keys.sign(handle, SignAlgorithm.HMAC_SHA256, data)

    return sign


def _pkcs11_object(uri: str, field: str) -> str:
    for attribute in uri[len("pkcs11:") :].split(";"):
        name, _, value = attribute.partition("=")
        if name == "object" and value:
            return value
    raise ConfigError(
        f"{field}: the pkcs11: URI names no object",
        hint='add ";object=<key label>", or give { key = "NAME" } of the key service',
    )


async def _x509(
    tls: ssl.SSLContext,
    cert: str,
    key: str,
    section: str,
    keys: KeyService,
    run_blocking: RunBlocking,
    handshakes: BoundedExecutor,
    trust_bundle: str | None,
) -> creds.DeviceCredentials:
    """The X.509 identity: a key file goes to the standard library's TLS; a key of the key
    service (a name, or a `pkcs11:` URI's object) stays where it is and signs each handshake
    through `DelegatedTlsEndpoint`. Handshakes run on their own executor (`handshakes`): a
    step waits there for the key service, which needs the daemon's executor."""
    if key.startswith("file://"):
        await run_blocking(creds.with_client_certificate, tls, cert, key, section)
        return creds.DeviceCredentials(None, tls)
    field = f"[{section}] identity_pk"
    name = _pkcs11_object(key, field) if key.startswith("pkcs11:") else key
    handle = await keys.load(name)
    chain = await run_blocking(creds.read_pem, cert, f"[{section}] identity_cert")
    trusted = None
    if trust_bundle is not None:
        trusted = await run_blocking(creds.read_pem, trust_bundle, "trust_bundle_cert")
    loop = asyncio.get_running_loop()

    def sign_digest(digest: bytes) -> bytes:
        signing = keys.sign(handle, SignAlgorithm.ECDSA_SHA256_DIGEST, digest)
        return asyncio.run_coroutine_threadsafe(signing, loop).result(HANDSHAKE_SIGN_S)

    def endpoint(host: str, port: int) -> Endpoint:
        # Deferred: the OpenSSL binding loads only for an identity key outside files.
        from firmware.http.delegated_tls import DelegatedTlsEndpoint, TlsClientSession

        def session(server: str) -> TlsClientSession:
            return TlsClientSession(server, trusted, chain, sign_digest)

        return DelegatedTlsEndpoint(host, port, session, handshakes.run)

    return creds.DeviceCredentials(None, tls, endpoint)


def _common_name(cert_uri: str) -> str:
    """The subject CN of the identity certificate: the registration id when none is set."""
    # Deferred: cryptography loads only for X.509 attestation without a registration id.
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    path = creds.file_path(cert_uri, "identity_cert")
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"identity_cert {path}: not a readable PEM certificate ({exc})",
            hint="give the device's PEM certificate",
        ) from None
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not names:
        raise ConfigError(
            f"identity_cert {path} has no common name to use as the registration id",
            hint="set [provisioning.attestation] registration_id",
        )
    return str(names[0].value)


async def _payload(uri: str | None, run_blocking: RunBlocking) -> object | None:
    if uri is None:
        return None
    path = creds.file_path(uri, "[provisioning] payload")

    def read() -> object:
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"[provisioning] payload {path}: not a readable JSON file ({exc})",
                hint="write the DPS custom payload as JSON",
            ) from None

    return await run_blocking(read)
