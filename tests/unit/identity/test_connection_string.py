"""Device connection strings: the parts read, every unusable string refused with the part named,
and the key never shown."""

from __future__ import annotations

import base64

import pytest

from firmware.errors import ConfigError
from firmware.identity.connection_string import ConnectionString, parse_connection_string

KEY = bytes(range(32))
KEY_TEXT = base64.b64encode(KEY).decode()
BASIC = f"HostName=hub.azure-devices.net;DeviceId=edge-1;SharedAccessKey={KEY_TEXT}"


def test_reads_the_three_parts() -> None:
    assert parse_connection_string(BASIC) == ConnectionString(
        "hub.azure-devices.net", "edge-1", KEY, None, None
    )


def test_reads_optional_parts_in_any_order_and_case() -> None:
    text = (
        f" gatewayhostname = parent.local ;SHAREDACCESSKEY={KEY_TEXT};ModuleId=$edgeAgent;"
        "deviceid=edge-1;HostName=hub.azure-devices.net;"
    )
    assert parse_connection_string(text) == ConnectionString(
        "hub.azure-devices.net", "edge-1", KEY, "$edgeAgent", "parent.local"
    )


def refusal(text: str) -> str:
    with pytest.raises(ConfigError) as raised:
        parse_connection_string(text, "provisioning.connection_string")
    rendered = raised.value.render()
    assert KEY_TEXT not in rendered
    assert rendered.startswith("provisioning.connection_string: ")
    return rendered


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("DeviceId=d;SharedAccessKey=" + KEY_TEXT, "HostName missing"),
        ("HostName=h", "DeviceId and SharedAccessKey missing"),
        ("", "HostName and DeviceId and SharedAccessKey missing"),
        (BASIC + ";DeviceId=other", "DeviceId is given twice"),
        ("HostName=;DeviceId=d;SharedAccessKey=" + KEY_TEXT, "HostName is empty"),
    ],
)
def test_missing_empty_or_repeated_parts_are_named(text: str, named: str) -> None:
    assert named in refusal(text)


def test_unknown_parts_are_refused_by_name() -> None:
    rendered = refusal(BASIC + ";SharedAccessKeyName=iothubowner")
    assert "part 4 is 'SharedAccessKeyName'" in rendered
    assert "iothubowner" not in rendered
    assert "x509" in refusal("HostName=h;DeviceId=d;x509=true")


def test_a_part_without_equals_is_named_by_position_not_quoted() -> None:
    rendered = refusal(f"HostName=h;DeviceId=d;{KEY_TEXT.rstrip('=')}")
    assert "part 3 has no '='" in rendered


@pytest.mark.parametrize(
    ("key", "named"),
    [
        ("not base64!", "not base64"),
        (base64.b64encode(b"k" * 15).decode(), "15 bytes"),
        (base64.b64encode(b"k" * 65).decode(), "65 bytes"),
    ],
)
def test_unusable_keys_are_refused_without_showing_them(key: str, named: str) -> None:
    rendered = refusal(f"HostName=h;DeviceId=d;SharedAccessKey={key}")
    assert named in rendered
    assert key not in rendered


def test_the_key_is_not_in_the_repr() -> None:
    parsed = parse_connection_string(BASIC)
    assert KEY_TEXT not in repr(parsed) and repr(KEY) not in repr(parsed)
