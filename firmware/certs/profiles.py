"""Certificate profiles: X.509 builders for CAs, module server certs and client identity certs.

Every certificate carries the extensions `cryptography`'s path validation expects: basic
constraints and key usage (critical), subject and authority key identifiers; leaves carry their
SANs and extended key usage. Lifetimes are capped by the issuer's `not_valid_after`.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import datetime
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from firmware.certs.authority import MAX_COMMON_NAME
from firmware.certs.errors import InvalidCertificateRequest

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

    from firmware.certs.signing import SigningPublicKey

_DNS_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")


def name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def check_common_name(common_name: object) -> str:
    if not isinstance(common_name, str) or not 1 <= len(common_name) <= MAX_COMMON_NAME:
        raise InvalidCertificateRequest(
            f"common name {common_name!r} must be 1 to {MAX_COMMON_NAME} characters",
            hint="use the module's host name",
        )
    if any(ord(c) < 0x20 for c in common_name):
        raise InvalidCertificateRequest("common name holds control characters")
    return common_name


def subject_alt_names(values: list[str] | tuple[str, ...]) -> list[x509.GeneralName]:
    """SAN entries: IP addresses as IPAddress, host names (optionally `*.`-prefixed) as DNSName."""
    entries: list[x509.GeneralName] = []
    for value in values:
        if not isinstance(value, str) or not value:
            raise InvalidCertificateRequest(f"subject alternative name {value!r} is not a string")
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(value)))
            continue
        except ValueError:
            pass
        labels = value[2:].split(".") if value.startswith("*.") else value.split(".")
        if len(value) > 253 or not all(_DNS_LABEL.fullmatch(label) for label in labels):
            raise InvalidCertificateRequest(
                f"subject alternative name {value!r} is neither an IP address nor a DNS name",
                hint="use host names such as mymodule or mymodule.local, or IP addresses",
            )
        entries.append(x509.DNSName(value))
    return entries


def capped(not_after: datetime, issuer: x509.Certificate | None) -> datetime:
    """`not_after`, no later than the issuer's `not_valid_after`."""
    return min(not_after, issuer.not_valid_after_utc) if issuer is not None else not_after


def ca_builder(
    common_name: str,
    public_key: SigningPublicKey,
    issuer: x509.Certificate | None,
    issuer_public_key: SigningPublicKey,
    not_before: datetime,
    not_after: datetime,
    path_length: int | None,
) -> x509.CertificateBuilder:
    """A CA certificate; self-signed when `issuer` (the issuer's certificate) is None."""
    builder = _base(
        name(common_name),
        public_key,
        issuer.subject if issuer is not None else name(common_name),
        issuer_public_key,
        not_before,
        capped(not_after, issuer),
    )
    return builder.add_extension(
        x509.BasicConstraints(ca=True, path_length=path_length), critical=True
    ).add_extension(_key_usage(ca=True), critical=True)


def leaf_builder(
    common_name: str,
    public_key: CertificatePublicKeyTypes,
    issuer: x509.Certificate,
    issuer_public_key: SigningPublicKey,
    not_before: datetime,
    not_after: datetime,
    sans: list[x509.GeneralName],
    server: bool,
) -> x509.CertificateBuilder:
    """A module server certificate (`server`) or a client identity certificate."""
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = _base(
        name(common_name),
        public_key,
        issuer.subject,
        issuer_public_key,
        not_before,
        capped(not_after, issuer),
    )
    builder = (
        builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder


def _base(
    subject: x509.Name,
    public_key: CertificatePublicKeyTypes,
    issuer_name: x509.Name,
    issuer_public_key: SigningPublicKey,
    not_before: datetime,
    not_after: datetime,
) -> x509.CertificateBuilder:
    if not_after <= not_before:
        raise InvalidCertificateRequest(
            f"certificate for {subject.rfc4514_string()} would expire at "
            f"{not_after.isoformat()}, before it starts",
            hint="ask for a later expiration, or renew the issuing CA first",
        )
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_public_key), critical=False
        )
    )


def _key_usage(ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )
