"""Shared access signatures as the cloud checks them (DPS and IoT Hub), written from the public
documentation and independent of the device code it tests.

A token is `SharedAccessSignature sr=<url-encoded resource>&sig=<url-encoded base64
HMAC-SHA256(key, sr + "\\n" + se)>&se=<epoch>[&skn=<key name>]`. The signed string uses `sr`
exactly as sent, so both encodings seen in the field verify: `/` kept (aziot-identityd) and `/` as
%2f (the C SDK, the docs). The resource is compared decoded and lower-cased.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from dataclasses import dataclass
from urllib.parse import unquote

PREFIX = "SharedAccessSignature "


@dataclass(frozen=True)
class SasToken:
    """A parsed token: `signed_resource` as sent, `resource` decoded and lower-cased."""

    signed_resource: str
    resource: str
    signature: bytes
    expiry: int
    key_name: str | None


def parse_sas(text: str) -> SasToken | None:
    """The token in an Authorization header value (the prefix may be missing), or None when it
    is not a well-formed one."""
    body = text[len(PREFIX) :] if text.startswith(PREFIX) else text
    fields: dict[str, str] = {}
    for pair in body.split("&"):
        name, equals, value = pair.partition("=")
        if not equals or name in fields:
            return None
        fields[name] = value
    if not {"sr", "sig", "se"} <= fields.keys() or not fields.keys() <= {"sr", "sig", "se", "skn"}:
        return None
    try:
        signature = base64.b64decode(unquote(fields["sig"]), validate=True)
        expiry = int(fields["se"])
    except (binascii.Error, ValueError):
        return None
    return SasToken(
        signed_resource=fields["sr"],
        resource=unquote(fields["sr"]).lower(),
        signature=signature,
        expiry=expiry,
        key_name=fields.get("skn"),
    )


def decode_key(key_b64: str) -> bytes | None:
    try:
        return base64.b64decode(key_b64, validate=True)
    except binascii.Error:
        return None


def sas_valid(token: SasToken, *, key_b64: str, resource: str, key_name: str | None) -> bool:
    """Whether `token` is for `resource` and `key_name`, unexpired, and signed with the key."""
    key = decode_key(key_b64)
    if key is None or token.resource != resource.lower() or token.key_name != key_name:
        return False
    if token.expiry <= time.time():
        return False
    signed = f"{token.signed_resource}\n{token.expiry}".encode()
    expected = hmac.new(key, signed, hashlib.sha256).digest()
    return hmac.compare_digest(expected, token.signature)


def derive_device_key(group_key_b64: str, registration_id: str) -> str:
    """A group enrollment's device key: base64(HMAC-SHA256(group key, registration id))."""
    key = base64.b64decode(group_key_b64)
    digest = hmac.new(key, registration_id.encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()
