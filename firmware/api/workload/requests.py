"""Parsing of workload API request bodies: JSON object in, typed request out, or a 4xx naming
the field. No I/O: the handlers in `firmware.api.workload.routes` call these.

Field names are those of IoT Edge's workload API (`keyId`, `algo`, `data`, `plaintext`,
`ciphertext`, `initializationVector`, `commonName`, `expiration`).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import UTC, datetime

from firmware.errors import BadRequest, PayloadTooLarge
from firmware.identity import sealed
from firmware.identity.modules import SIGNING_KEYS, SigningKey

MAX_DATA_BYTES = 64 * 1024
MAX_IV_BYTES = 128
MIN_IV_BYTES = 8
MAX_COMMON_NAME = 64
SIGN_ALGORITHM = "HMACSHA256"


@dataclass(frozen=True)
class SignRequest:
    key: SigningKey
    data: bytes


@dataclass(frozen=True)
class CipherRequest:
    """An encrypt (`data` is the plaintext) or decrypt (`data` is the ciphertext) request."""

    data: bytes
    iv: bytes


@dataclass(frozen=True)
class ServerCertificateRequest:
    common_name: str
    expiration: datetime


@dataclass(frozen=True)
class IdentityCertificateRequest:
    expiration: datetime | None


def parse_sign(body: dict[str, object]) -> SignRequest:
    key_id = _string(body, "keyId")
    key = SIGNING_KEYS.get(key_id)
    if key is None:
        raise BadRequest(
            f"field 'keyId': unknown key {key_id!r}", hint='use "primary" (or "secondary")'
        )
    algorithm = _string(body, "algo")
    if algorithm != SIGN_ALGORITHM:
        raise BadRequest(
            f"field 'algo': unsupported algorithm {algorithm!r}", hint=f'use "{SIGN_ALGORITHM}"'
        )
    return SignRequest(key, _base64(body, "data", MAX_DATA_BYTES))


def parse_encrypt(body: dict[str, object]) -> CipherRequest:
    return CipherRequest(_base64(body, "plaintext", MAX_DATA_BYTES), _iv(body))


def parse_decrypt(body: dict[str, object]) -> CipherRequest:
    return CipherRequest(_base64(body, "ciphertext", MAX_DATA_BYTES + sealed.OVERHEAD), _iv(body))


def parse_server_certificate(body: dict[str, object]) -> ServerCertificateRequest:
    name = _string(body, "commonName")
    if not name or len(name) > MAX_COMMON_NAME:
        raise BadRequest(
            f"field 'commonName' must be 1-{MAX_COMMON_NAME} characters",
            hint="use the module's host name",
        )
    return ServerCertificateRequest(name, _expiration(body))


def parse_identity_certificate(body: dict[str, object] | None) -> IdentityCertificateRequest:
    body = body or {}
    return IdentityCertificateRequest(_expiration(body) if "expiration" in body else None)


def _string(body: dict[str, object], name: str) -> str:
    if name not in body:
        raise BadRequest(f"field {name!r} is missing", hint=f"add {name!r} to the JSON body")
    value = body[name]
    if not isinstance(value, str):
        raise BadRequest(f"field {name!r} must be a string")
    return value


def _base64(body: dict[str, object], name: str, limit: int) -> bytes:
    text = _string(body, name)
    if len(text) > (limit + 2) // 3 * 4:
        raise PayloadTooLarge(
            f"field {name!r} is larger than {limit} bytes", hint="send less data per request"
        )
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise BadRequest(
            f"field {name!r} is not valid base64", hint="encode it with standard base64 (RFC 4648)"
        ) from None


def _iv(body: dict[str, object]) -> bytes:
    iv = _base64(body, "initializationVector", MAX_IV_BYTES * 2)
    if not MIN_IV_BYTES <= len(iv) <= MAX_IV_BYTES:
        raise BadRequest(
            f"field 'initializationVector' is {len(iv)} bytes; AES-GCM takes "
            f"{MIN_IV_BYTES}-{MAX_IV_BYTES}",
            hint="send 12 random bytes, base64-encoded",
        )
    return iv


def _expiration(body: dict[str, object]) -> datetime:
    text = _string(body, "expiration")
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise BadRequest(
            f"field 'expiration': {text!r} is not an ISO 8601 time",
            hint='use e.g. "2030-01-01T00:00:00Z"',
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    if when <= datetime.now(UTC):
        raise BadRequest(
            f"field 'expiration': {text!r} is in the past", hint="ask for a time in the future"
        )
    return when
