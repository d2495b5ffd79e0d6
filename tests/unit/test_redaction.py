"""`firmware.logs.redact`: the secrets written inside text are hidden, the text around them kept."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware.redaction import holds_secret, redact

SECRET = "Zq9SECRETvalue+/=="


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (
            f"pkcs11:token=edge;object=ca?pin-value={SECRET}",
            "pkcs11:token=edge;object=ca?pin-value=***",
        ),
        (
            f"pkcs11:object=ca?pin-value={SECRET}&module-name=softhsm2",
            "pkcs11:object=ca?pin-value=***&module-name=softhsm2",
        ),
        (f"pkcs11:object=ca;PIN-VALUE={SECRET}", "pkcs11:object=ca;PIN-VALUE=***"),
        (
            f"HostName=hub.example;DeviceId=gw;SharedAccessKey={SECRET}",
            "HostName=hub.example;DeviceId=gw;SharedAccessKey=***",
        ),
        (
            f"SharedAccessSignature sr=hub%2Fdevices%2Fgw&sig={SECRET}&se=1700000000",
            "SharedAccessSignature sr=hub%2Fdevices%2Fgw&sig=***&se=1700000000",
        ),
        (
            "pull from https://user:Zq9%2FSECRET@registry.example/v2",
            "pull from https://user:***@registry.example/v2",
        ),
        (
            f"-----BEGIN EC PRIVATE KEY-----\n{SECRET}\n-----END EC PRIVATE KEY-----",
            "-----BEGIN EC PRIVATE KEY-----***-----END EC PRIVATE KEY-----",
        ),
        (f"-----BEGIN PRIVATE KEY-----\n{SECRET}", "-----BEGIN PRIVATE KEY-----***"),
        (f'uri = "pkcs11:object=ca?pin-value={SECRET}"', 'uri = "pkcs11:object=ca?pin-value=***"'),
    ],
)
def test_secrets_inside_text_are_hidden(text: str, shown: str) -> None:
    assert holds_secret(text)
    assert redact(text) == shown
    assert redact(text, "<redacted>") == shown.replace("***", "<redacted>")


@pytest.mark.parametrize(
    "text",
    [
        "pkcs11:token=edge;object=ca",
        "unix:///run/edgekeeper/mgmt.sock",
        "https://registry.example:5000/v2",
        "HostName=hub.example;DeviceId=gw",
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----",
        "design=simple",
    ],
)
def test_text_without_secrets_is_unchanged(text: str) -> None:
    assert not holds_secret(text)
    assert redact(text) == text


@given(
    before=st.text(max_size=30),
    secret=st.text(st.characters(codec="ascii", categories=("L", "N")), min_size=4, max_size=40),
    after=st.sampled_from(["", ";object=x", "&x=1", " next", '"', "\n"]),
)
def test_a_pin_value_never_survives(before: str, secret: str, after: str) -> None:
    text = f"{before}pkcs11:object=k?pin-value={secret}{after}"
    assert f"pin-value={secret}" not in redact(text)
    assert redact(text).endswith(f"pin-value=***{after}")
