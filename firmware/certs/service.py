"""`CertificateService`: the Edge CA hierarchy, module certificates, trust bundles and renewal.

At start the managed certificates (see `firmware.certs.authority`) are loaded from the state store
under `[certificates] dir`, or issued when missing, expired, or no longer matching their key or
issuer; each gets a renewal timer. When every stored record carries facts that still hold and
every key exists (`firmware.certs.stored`), the timers are armed from the facts alone and those
checks run when a certificate is first issued, renewed, listed or handed out: `cryptography`
(about 5 MB of anonymous memory) is imported then, not by a daemon that idles.

A renewal issues a new certificate for the same key, verifies it against its issuer with
`cryptography`, replaces the stored one atomically, logs it, and renews the certificates it
issued. A renewal that fails keeps the old certificate and marks the service
degraded until a retry succeeds.

Module server and identity certificates are issued per request by the workload CA, for a key pair
generated for that request and returned with it (never stored). Their lifetime is the policy's
`server_lifetime` or `identity_lifetime` at most (and the default); a module's server certificate
names only what the policy's `server_names` lets that module claim.

Renewals can be awaited: `renewed(name, after=cert)` returns once `name` holds another certificate,
`renewal_failed(name, attempts)` once its renewal failed that many times in a row. Both wake on
renewal outcomes (no polling) and never time out by themselves.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from firmware.certs.authority import EDGE_CA, ROOT, WORKLOAD_CA, ManagedSpec, hierarchy
from firmware.certs.errors import (
    CertificateNotFound,
    EdgeCaConfigError,
    InvalidCertificateRequest,
)
from firmware.certs.policy import CertificatePolicy, file_uri_path
from firmware.certs.renewal import RenewalFailure, RenewalSchedule
from firmware.certs.stored import StoredFacts, der_sha256, facts_hold
from firmware.errors import NotSupported
from firmware.keys.backend import KeyKind
from firmware.keys.errors import KeyNotFound
from firmware.store.state import StateStore

if TYPE_CHECKING:
    from cryptography import x509

    from firmware.certs.signing import CertificateSigner
    from firmware.executor import BoundedExecutor
    from firmware.keys.service import KeyService

log = logging.getLogger("edgekeeper.certs")


@dataclass(frozen=True)
class CertificateInfo:
    """One managed certificate as `certs list` shows it."""

    name: str
    subject: str
    issuer: str
    not_before: datetime
    not_after: datetime
    days_left: float
    backend: str
    status: str

    def document(self) -> dict[str, str | float]:
        """The JSON object the management API answers for this certificate."""
        return {
            "name": self.name,
            "subject": self.subject,
            "issuer": self.issuer,
            "notBefore": self.not_before.isoformat(),
            "notAfter": self.not_after.isoformat(),
            "daysLeft": self.days_left,
            "backend": self.backend,
            "status": self.status,
        }


@dataclass(frozen=True)
class IssuedCertificate:
    """A module certificate: the PEM chain (leaf first), its private key PEM, its expiry."""

    certificate_pem: str
    private_key_pem: str
    expiration: datetime


class CertificateService:
    """Managed CA certificates in the state store, with renewal timers; issues module certs."""

    def __init__(
        self, keys: KeyService, policy: CertificatePolicy, executor: BoundedExecutor
    ) -> None:
        self._keys = keys
        self.policy = policy
        self._executor = executor
        self._store = StateStore(policy.directory)
        self._specs = {spec.name: spec for spec in hierarchy(policy)}
        self._signers: dict[str, CertificateSigner] = {}
        self._certs: dict[str, x509.Certificate] = {}
        self._facts: dict[str, StoredFacts] = {}
        self._stored_pems: dict[str, str] = {}  # kept at start, not parsed or checked yet
        self._checked = False
        self._checking = asyncio.Lock()
        self._operator_chain: list[x509.Certificate] = []
        self._reissued: dict[str, str] = {}
        self._schedule = RenewalSchedule(
            self._renew_scheduled,
            renew_at=policy.renew_at,
            retry_initial=policy.retry_initial,
            retry_max=policy.retry_max,
        )

    async def start(self) -> None:
        """Arm the renewal timers: from the stored facts when they hold (checks wait for first
        use), else after loading, checking or issuing every managed certificate now."""
        await self._executor.run(self._store.ensure)
        if await self._keep_stored():
            for name in self._specs:
                self._plan(name)
            log.info("stored certificates kept; checked against their keys on first use")
            return
        await self._check()

    async def _keep_stored(self) -> bool:
        """Whether every managed certificate's stored facts hold and its key exists; if so they
        are kept (not parsed). Issuers come before what they issue in `self._specs`."""
        facts: dict[str, StoredFacts] = {}
        pems: dict[str, str] = {}
        now = time.time()
        for spec in self._specs.values():
            if spec.key_name is None:
                return False
            record = await self._executor.run(self._store.get, spec.name)
            issuer = facts[spec.issuer].sha256 if spec.issuer else None
            held = facts_hold(record, spec.key_name, issuer, now) if record else None
            if record is None or held is None:
                return False
            try:
                await self._keys.load(spec.key_name)
            except KeyNotFound:
                return False
            facts[spec.name] = held
            pems[spec.name] = record["certificate"]
        self._facts, self._stored_pems = facts, pems
        return True

    async def _check(self) -> None:
        """Load every managed certificate and check it against its key and issuer, issuing what
        is missing or no longer fits; once, at start or on first use."""
        async with self._checking:
            if self._checked:
                return
            for spec in self._specs.values():
                if spec.key_name is not None:
                    self._signers[spec.name] = await self._key_signer(spec.key_name)
                    await self._load_or_issue(spec)
                    self._plan(spec.name)
                else:
                    await self._load_operator_ca(spec)
            self._stored_pems.clear()
            self._checked = True

    async def stop(self) -> None:
        self._schedule.cancel()
        await self._schedule.wait_idle()

    @property
    def degraded(self) -> dict[str, str]:
        """Certificates whose last renewal failed, with the reason."""
        return {name: failure.message for name, failure in self._schedule.failures.items()}

    @property
    def reissued(self) -> dict[str, str]:
        """Stored CA certificates that could not be kept at start and were issued again: why."""
        return dict(self._reissued)

    def describe(self) -> dict[str, object]:
        """Status detail: degraded certificates, the managed ones, and those issued again at
        start instead of being kept (with why, and how many)."""
        return {
            "degraded": self.degraded,
            "certificates": sorted({*self._certs, *self._facts}),
            "reissued": self.reissued,
            "reissued_count": len(self._reissued),
        }

    def certificate(self, name: str) -> x509.Certificate:
        """The current `cryptography` certificate of managed certificate `name` (the stored one
        when it has not been checked yet)."""
        if name in self._stored_pems:
            # Deferred: cryptography loads on first use (see the module docstring).
            from firmware.certs import material

            return material.load_pem(self._stored_pems[name])
        try:
            return self._certs[name]
        except KeyError:
            raise CertificateNotFound(
                f"no managed certificate {name!r}",
                hint=f"managed certificates: {', '.join(sorted(self._certs))}",
            ) from None

    async def renewed(self, name: str, after: x509.Certificate) -> x509.Certificate:
        """Wait until managed certificate `name` is no longer `after` (another serial number:
        renewed by its timer, a cascade or `renew`) and return the new one.

        Wakes on renewal outcomes, never polls; bound the wait with `asyncio.timeout`.
        """
        await self._schedule.until(
            lambda: self.certificate(name).serial_number != after.serial_number
        )
        return self.certificate(name)

    async def renewal_failed(self, name: str, attempts: int = 1) -> RenewalFailure:
        """Wait until the renewal of `name` has failed `attempts` times in a row; its failure.

        Wakes on renewal outcomes, never polls; bound the wait with `asyncio.timeout`.
        """
        self.certificate(name)
        failures = self._schedule.failures
        await self._schedule.until(lambda: name in failures and failures[name].attempts >= attempts)
        return failures[name]

    async def list(self) -> list[CertificateInfo]:
        await self._check()
        now = _now()
        infos = []
        for name, cert in self._certs.items():
            left = (cert.not_valid_after_utc - now).total_seconds()
            status = "ok"
            if name in self.degraded:
                status = f"degraded: {self.degraded[name]}"
            if left <= 0:
                status = "expired"
            infos.append(
                CertificateInfo(
                    name=name,
                    subject=cert.subject.rfc4514_string(),
                    issuer=cert.issuer.rfc4514_string(),
                    not_before=cert.not_valid_before_utc,
                    not_after=cert.not_valid_after_utc,
                    days_left=round(left / 86400, 2),
                    backend=self._signers[name].backend,
                    status=status,
                )
            )
        return infos

    async def renew(self, name: str) -> CertificateInfo:
        """Renew `name` now (same key, new validity) and the certificates it issued."""
        self.certificate(name)
        await self._check()
        spec = self._specs[name]
        if not spec.renewable:
            raise NotSupported(
                f"certificate {name!r} is provided by the operator and not renewed by edgekeeper",
                hint="replace the file named in [edge_ca] cert and restart",
            )
        await self._renew_tree(name)
        return next(info for info in await self.list() if info.name == name)

    def module_server_names(self, module_id: str, common_name: str) -> tuple[str, ...]:
        """The SANs of the server certificate `module_id` asks for with `common_name`, or
        `ServerNameRefused`/`InvalidCertificateRequest` when the server-name policy does not let
        it claim that name. Cheap: callers check it before they spend anything on issuing."""
        return self.policy.server_names.subject_names(module_id, common_name)

    async def issue_module_server_certificate(
        self, module_id: str, common_name: str, expiration: datetime | str | None = None
    ) -> IssuedCertificate:
        """The TLS server certificate module `module_id` asks for: `common_name` must be a name
        it may claim (see `module_server_names`); its SANs are that name and, as IoT Edge's,
        the module's id without its `$` when that is a DNS label."""
        sans = self.module_server_names(module_id, common_name)
        return await self.issue_server_certificate(common_name, sans, expiration)

    async def issue_server_certificate(
        self,
        common_name: str,
        sans: Sequence[str] = (),
        expiration: datetime | str | None = None,
    ) -> IssuedCertificate:
        """A TLS server certificate: CN, SANs (DNS names or IPs, unchecked against any module:
        for the daemon's own use), lifetime capped at `server_lifetime`."""
        # Deferred: cryptography loads on first use (see the module docstring).
        from firmware.certs import profiles

        profiles.check_common_name(common_name)
        entries = profiles.subject_alt_names(list(sans) or [common_name])
        return await self._issue_leaf(
            common_name, entries, expiration, self.policy.server_lifetime, server=True
        )

    async def issue_identity_certificate(
        self, module_id: str, expiration: datetime | str | None = None
    ) -> IssuedCertificate:
        """A TLS client identity certificate whose CN is the module id."""
        # Deferred: cryptography loads on first use (see the module docstring).
        from firmware.certs import profiles

        profiles.check_common_name(module_id)
        return await self._issue_leaf(
            module_id, [], expiration, self.policy.identity_lifetime, server=False
        )

    async def trust_bundle(self) -> str:
        """PEM of the roots modules should trust: the quickstart root or the operator's chain,
        then the certificates of `trust_bundle_cert`."""
        await self._check()
        # Deferred: cryptography loads on first use (see the module docstring).
        from firmware.certs import material

        if self.policy.quickstart:
            pems = [material.pem_of(self._certs[ROOT])]
        else:
            chain = [self._certs[EDGE_CA], *self._operator_chain]
            pems = [material.pem_of(cert) for cert in chain]
        if self.policy.trust_bundle is not None:
            pems.append(await self._read_text(self.policy.trust_bundle, "trust_bundle_cert"))
        return "".join(pems)

    async def manifest_trust_bundle(self) -> str | None:
        """PEM of the certificates that sign deployment manifests, or None when none is set
        (modules then take manifest signing as off). A bundle set but unreadable is an error."""
        if self.policy.manifest_trust_bundle is None:
            return None
        return await self._read_text(self.policy.manifest_trust_bundle, "manifest_trust_bundle")

    async def _issue_leaf(
        self,
        common_name: str,
        sans: Sequence[x509.GeneralName],
        expiration: datetime | str | None,
        lifetime: float,
        server: bool,
    ) -> IssuedCertificate:
        """A leaf for a new key pair, valid until `expiration` but `lifetime` seconds at most."""
        await self._check()
        # Deferred: cryptography loads on first use (see the module docstring).
        from firmware.certs import material, profiles

        issuer = self._certs[WORKLOAD_CA]
        signer = self._signers[WORKLOAD_CA]
        now = _now()
        longest = now + timedelta(seconds=lifetime)
        not_after = longest if expiration is None else min(_expiration(expiration, now), longest)
        private, key_pem = await self._executor.run(material.leaf_key)
        builder = profiles.leaf_builder(
            common_name,
            private.public_key(),
            issuer,
            await signer.public_key(),
            now,
            not_after,
            list(sans),
            server,
        )
        cert = await signer.sign(builder)
        material.check_issued(cert, issuer, common_name)
        chain = [cert, issuer, self._certs[EDGE_CA]]
        return IssuedCertificate(
            certificate_pem="".join(material.pem_of(c) for c in chain),
            private_key_pem=key_pem,
            expiration=cert.not_valid_after_utc,
        )

    async def _renew_scheduled(self, name: str) -> None:
        await self._check()
        await self._renew_tree(name)

    async def _renew_tree(self, name: str) -> None:
        await self._issue(self._specs[name])
        log.info(
            "renewed certificate %s, valid until %s",
            name,
            self._certs[name].not_valid_after_utc.isoformat(),
        )
        self._schedule.succeeded(name)
        self._plan(name)
        for child in self._specs.values():
            if child.issuer == name and child.renewable:
                await self._renew_tree(child.name)

    async def _load_or_issue(self, spec: ManagedSpec) -> None:
        record = await self._executor.run(self._store.get, spec.name)
        if not record:
            await self._issue(spec)
            log.info("issued certificate %s", spec.name)
            return
        cert, problem = await self._usable(spec, record)
        if cert is None:
            await self._issue(spec)
            self._reissued[spec.name] = problem
            log.warning("issued certificate %s again: the stored one %s", spec.name, problem)
            return
        self._certs[spec.name] = cert
        facts = self._facts_of(spec, cert, record["certificate"])
        self._facts[spec.name] = facts
        if StoredFacts.of_record(record) != facts:
            await self._executor.run(self._store.put, spec.name, {**record, **facts.fields()})

    async def _usable(
        self, spec: ManagedSpec, record: dict[str, Any]
    ) -> tuple[x509.Certificate | None, str]:
        """The stored certificate if it still fits its key and issuer and has not expired;
        else None and why not."""
        # Deferred: cryptography loads on first use (see the module docstring).
        from firmware.certs import material

        if record.get("key") != spec.key_name:
            return None, f"was made for key {record.get('key')!r}, not {spec.key_name!r}"
        try:
            cert = material.load_pem(record["certificate"])
        except (KeyError, ValueError, AttributeError):
            return None, "is unreadable"
        own_key = await self._signers[spec.name].public_key()
        if material.spki_of(cert.public_key()) != material.spki_of(own_key):
            return None, (
                f"is for another public key than key {spec.key_name!r} has now: that key was "
                "made again (it was gone from its key backend); whoever trusted the old "
                "certificate must be given the new one"
            )
        if cert.not_valid_after_utc <= _now():
            return None, f"expired on {cert.not_valid_after_utc.isoformat()}"
        issuer = self._certs.get(spec.issuer) if spec.issuer else cert
        if issuer is None or not material.issued_by(cert, issuer):
            return None, f"no longer verifies against its issuer {spec.issuer}, issued again"
        return cert, ""

    async def _issue(self, spec: ManagedSpec) -> None:
        # Deferred: cryptography loads on first use (see the module docstring).
        from firmware.certs import material, profiles

        signer = self._signers[spec.name]
        issuer_cert = self._certs[spec.issuer] if spec.issuer else None
        issuer_signer = self._signers[spec.issuer] if spec.issuer else signer
        now = _now()
        builder = profiles.ca_builder(
            spec.common_name,
            await signer.public_key(),
            issuer_cert,
            await issuer_signer.public_key(),
            now,
            now + timedelta(seconds=spec.lifetime),
            spec.path_length,
        )
        cert = await issuer_signer.sign(builder)
        material.check_issued(cert, issuer_cert if issuer_cert is not None else cert, spec.name)
        pem = material.pem_of(cert)
        facts = self._facts_of(spec, cert, pem)
        record = {"certificate": pem, "key": spec.key_name, "issuer": spec.issuer}
        await self._executor.run(self._store.put, spec.name, {**record, **facts.fields()})
        self._certs[spec.name] = cert
        self._facts[spec.name] = facts

    def _facts_of(self, spec: ManagedSpec, cert: x509.Certificate, pem: str) -> StoredFacts:
        own = der_sha256(pem) or ""
        issuer = own
        if spec.issuer in self._facts:
            issuer = self._facts[spec.issuer].sha256
        elif spec.issuer:  # the operator's Edge CA: never stored, so no facts
            # Deferred: cryptography loads on first use (see the module docstring).
            from firmware.certs import material

            issuer = der_sha256(material.pem_of(self._certs[spec.issuer])) or ""
        return StoredFacts(
            cert.not_valid_before_utc.timestamp(), cert.not_valid_after_utc.timestamp(), own, issuer
        )

    async def _key_signer(self, key_name: str) -> CertificateSigner:
        # Deferred: cryptography loads on first use (see the module docstring).
        from firmware.certs.signing import KeyServiceSigner

        handle = await self._keys.create_key_pair(key_name, KeyKind.EC_P256)
        info = await self._keys.info(handle)
        return KeyServiceSigner(self._keys, handle, info.kind, info.backend, self._executor)

    async def _load_operator_ca(self, spec: ManagedSpec) -> None:
        path = self.policy.edge_ca_cert
        if path is None:
            raise EdgeCaConfigError(
                "[edge_ca] cert is not set", hint="name the operator's Edge CA certificate file"
            )
        # Deferred: cryptography loads on first use (see the module docstring).
        from firmware.certs import material

        try:
            certs = material.load_pem_chain(await self._read_text(path, "[edge_ca] cert"))
        except ValueError as err:
            raise EdgeCaConfigError(
                f"[edge_ca] cert {path} holds no PEM certificate", hint="give a PEM file"
            ) from err
        signer = await self._operator_signer()
        if material.spki_of(certs[0].public_key()) != material.spki_of(await signer.public_key()):
            raise EdgeCaConfigError(
                f"[edge_ca] pk does not match the certificate in {path}",
                hint="give the private key that belongs to the Edge CA certificate",
            )
        self._signers[spec.name] = signer
        self._certs[spec.name] = certs[0]
        self._operator_chain = certs[1:]

    async def _operator_signer(self) -> CertificateSigner:
        # Deferred: cryptography loads on first use (see the module docstring).
        from cryptography.hazmat.primitives.asymmetric import ec, rsa

        from firmware.certs import material
        from firmware.certs.signing import SoftwareSigner

        uri = self.policy.edge_ca_key or ""
        key_name = _key_service_name(uri)
        if key_name is not None:
            return await self._existing_key_signer(key_name)
        path = file_uri_path(uri, "[edge_ca] pk")
        text = await self._read_text(path, "[edge_ca] pk")
        try:
            private = material.load_private_key(text)
        except (ValueError, TypeError) as err:
            raise EdgeCaConfigError(
                f"[edge_ca] pk {path} is not an unencrypted PEM private key",
                hint="give the Edge CA key as unencrypted PEM (file mode 0600)",
            ) from err
        if not isinstance(private, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
            raise EdgeCaConfigError(
                f"[edge_ca] pk {path} holds a {type(private).__name__}, not an EC or RSA key",
                hint="give an EC (P-256) or RSA Edge CA key",
            )
        return SoftwareSigner(private, self._executor)

    async def _existing_key_signer(self, key_name: str) -> CertificateSigner:
        # Deferred: cryptography loads on first use (see the module docstring).
        from firmware.certs.signing import KeyServiceSigner

        handle = await self._keys.load(key_name)
        info = await self._keys.info(handle)
        return KeyServiceSigner(self._keys, handle, info.kind, info.backend, self._executor)

    async def _read_text(self, path: Path, where: str) -> str:
        try:
            return await self._executor.run(path.read_text, "ascii")
        except (OSError, UnicodeDecodeError) as err:
            raise EdgeCaConfigError(
                f"{where} file {path} cannot be read: {err}", hint="check the path and its mode"
            ) from err

    def _plan(self, name: str) -> None:
        facts = self._facts[name]
        delay = self._schedule.plan(name, facts.not_before, facts.not_after)
        log.debug("certificate %s renews in %.0f s", name, delay)


def _key_service_name(uri: str) -> str | None:
    """The key-service key an `[edge_ca] pk` names: `key:NAME`, or a PKCS#11 URI's `object=NAME`
    (route that name to the pkcs11 backend in `[keys.backends]`); None for file URIs."""
    if uri.startswith("key:"):
        return uri[len("key:") :]
    if uri.startswith("pkcs11:"):
        attributes = dict(
            part.split("=", 1) for part in uri[len("pkcs11:") :].split(";") if "=" in part
        )
        if "object" not in attributes:
            raise EdgeCaConfigError(
                f"[edge_ca] pk = {uri!r} names no object",
                hint='use "pkcs11:object=<key label>" and route that key to pkcs11 in '
                "[keys.backends]",
            )
        return unquote(attributes["object"])
    return None


def _expiration(value: datetime | str, now: datetime) -> datetime:
    if isinstance(value, datetime):
        when = value if value.tzinfo else value.replace(tzinfo=UTC)
    else:
        try:
            when = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            raise InvalidCertificateRequest(
                f"expiration {value!r} is not an ISO 8601 time",
                hint='use e.g. "2030-01-01T00:00:00Z"',
            ) from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
    if when <= now:
        raise InvalidCertificateRequest(
            f"expiration {value!s} is in the past", hint="ask for a time in the future"
        )
    return when.replace(microsecond=0)


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)
