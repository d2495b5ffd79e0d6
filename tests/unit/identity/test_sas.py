"""SAS tokens: audiences in the documented form, the bytes signed and the token's pairs."""

from __future__ import annotations

import base64
import hashlib
import hmac
from urllib.parse import parse_qsl, unquote

from firmware.identity import sas


def test_device_audience_is_the_documented_example() -> None:
    assert (
        sas.audience_device("myhub.azure-devices.net", "device1")
        == "myhub.azure-devices.net%2fdevices%2fdevice1"
    )


def test_audiences_are_lower_case_with_lower_case_escapes() -> None:
    assert sas.audience_dps("0ne00ABC123", "Dev:1") == "0ne00abc123%2fregistrations%2fdev%3a1"
    assert (
        sas.audience_device("MyHub.azure-devices.net", "Edge $1")
        == "myhub.azure-devices.net%2fdevices%2fedge%20%241"
    )
    # Decoding gives back the resource URI, lower-cased.
    assert unquote(sas.audience_dps("0ne00ABC123", "a/b?c")) == "0ne00abc123/registrations/a/b?c"


def test_string_to_sign_is_audience_newline_expiry() -> None:
    assert sas.string_to_sign("abc%2fdef", 1700000000) == b"abc%2fdef\n1700000000"


def test_token_pairs_come_in_order_and_the_signature_is_url_encoded() -> None:
    audience = sas.audience_dps("0ne00ABC123", "device-1")
    expiry = 1700000000
    signature = hmac.digest(b"k" * 32, sas.string_to_sign(audience, expiry), hashlib.sha256)
    text = sas.token(audience, signature, expiry, sas.DPS_KEY_NAME)
    scheme, _, pairs = text.partition(" ")
    assert scheme == "SharedAccessSignature"
    assert pairs.startswith(f"sr={audience}&sig=")
    assert (
        "+" not in pairs and "/" not in pairs.split("&")[1] and "=" not in pairs.split("&")[1][4:]
    )
    assert parse_qsl(pairs) == [
        ("sr", unquote(audience)),
        ("sig", base64.b64encode(signature).decode()),
        ("se", str(expiry)),
        ("skn", "registration"),
    ]


def test_hub_token_has_no_key_name() -> None:
    text = sas.token("hub%2fdevices%2fd", b"\xff" * 32, 5)
    assert text == f"SharedAccessSignature sr=hub%2fdevices%2fd&sig={'%2F' * 42}8%3D&se=5"
    assert "skn" not in text
