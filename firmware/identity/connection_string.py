"""A device's IoT Hub connection string, read into a `ConnectionString`.

`HostName=<hub>;DeviceId=<id>;SharedAccessKey=<base64>`, optionally with `ModuleId=` and
`GatewayHostName=` (a parent gateway in a nested setup). Part names are matched without regard
to case; any other part (a service policy's `SharedAccessKeyName`, `x509=true`, a typo) is
refused, as are repeated parts. The key is decoded and must be 16 to 64 bytes, as the hub
requires. No error ever quotes the key or a part that could hold it: they name the part and its
position.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field

from firmware.errors import ConfigError

KEY_BYTES = (16, 64)
_FORM = "HostName=<hub>;DeviceId=<device>;SharedAccessKey=<base64 key>"
_PARTS = {
    "hostname": "HostName",
    "deviceid": "DeviceId",
    "sharedaccesskey": "SharedAccessKey",
    "moduleid": "ModuleId",
    "gatewayhostname": "GatewayHostName",
}
_REQUIRED = ("HostName", "DeviceId", "SharedAccessKey")


@dataclass(frozen=True)
class ConnectionString:
    """What a device connection string says; the key is raw bytes and never shown."""

    host_name: str
    device_id: str
    shared_access_key: bytes = field(repr=False)
    module_id: str | None = None
    gateway_host_name: str | None = None


def parse_connection_string(text: str, what: str = "connection string") -> ConnectionString:
    """`text` read as a device connection string; `ConfigError` naming `what` and the part that
    is missing, unknown, repeated or unusable otherwise."""
    values: dict[str, str] = {}
    for position, part in enumerate(text.split(";"), start=1):
        if not part.strip():
            continue
        name, equals, value = part.partition("=")
        if not equals:
            raise ConfigError(
                f"{what}: part {position} has no '=' (parts are Name=value, separated by ';')",
                hint=f"write it as {_FORM}",
            )
        canonical = _PARTS.get(name.strip().lower())
        if canonical is None:
            raise ConfigError(
                f"{what}: part {position} is {name.strip()!r}, which a device connection "
                "string does not have",
                hint=f"use a device's connection string ({_FORM}, optionally ModuleId and "
                "GatewayHostName), not a hub policy's or an X.509 device's",
            )
        if canonical in values:
            raise ConfigError(f"{what}: {canonical} is given twice", hint="keep one of them")
        if not value.strip():
            raise ConfigError(f"{what}: {canonical} is empty", hint=f"write it as {_FORM}")
        values[canonical] = value.strip()
    missing = [name for name in _REQUIRED if name not in values]
    if missing:
        raise ConfigError(
            f"{what}: {' and '.join(missing)} missing",
            hint=f"copy the device's whole connection string ({_FORM})",
        )
    return ConnectionString(
        host_name=values["HostName"],
        device_id=values["DeviceId"],
        shared_access_key=_key(values["SharedAccessKey"], what),
        module_id=values.get("ModuleId"),
        gateway_host_name=values.get("GatewayHostName"),
    )


def _key(text: str, what: str) -> bytes:
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(
            f"{what}: SharedAccessKey is not base64",
            hint="copy the primary or secondary key exactly as the hub shows it",
        ) from None
    low, high = KEY_BYTES
    if not low <= len(key) <= high:
        raise ConfigError(
            f"{what}: SharedAccessKey is {len(key)} bytes; the hub's keys are {low} to {high}",
            hint="copy the primary or secondary key exactly as the hub shows it",
        )
    return key
