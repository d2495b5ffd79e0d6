"""Device URLs: one string names a device and how to reach it, parsed and checked once.

    device:/dev/tpmrm0                      the kernel's TPM resource manager (tpm2-tss)
    tabrmd                                  the user-space TPM resource manager (tpm2-tss)
    swtpm://127.0.0.1:2321                  a TPM simulator's socket (tpm2-tss)
    tis-i2c:///dev/i2c-1?addr=0x2e          TIS over I²C, driven by edgekeeper
    tis-spi:///dev/spidev0.1?hz=10000000    TIS over SPI, driven by edgekeeper
    mssim+serial:///dev/ttyUSB0?baud=115200 TPM frames over a serial line
    mssim+socket://host:port, mssim+rfc2217://host:port   the same frames over pyserial's URLs
    serial:///dev/ttyS0?baud=115200, rfc2217://host:port, socket://host:port   a console line

IoT Edge's TCTI strings (`device:/dev/tpmrm0`, `swtpm:host=…,port=…`, `mssim:…`) read as the URL
they mean. Parsing only reads the text: whether the device exists is found when it is opened.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from urllib.parse import parse_qsl, urlsplit

from firmware.transports.errors import DeviceUrlError

URL_HINT = (
    'write a device URL such as "device:/dev/tpmrm0", "tis-i2c:///dev/i2c-1?addr=0x2e", '
    '"tis-spi:///dev/spidev0.1", "mssim+serial:///dev/ttyUSB0?baud=115200" or '
    '"swtpm://127.0.0.1:2321"; docs/transports.md lists them'
)

# scheme -> (needs a path, needs host:port, the query parameters it takes)
_SHAPES: Mapping[str, tuple[bool, bool, frozenset[str]]] = {
    "device": (True, False, frozenset()),
    "tabrmd": (False, False, frozenset()),
    "swtpm": (False, True, frozenset()),
    "mssim": (False, True, frozenset()),
    "tis-i2c": (True, False, frozenset({"addr", "locality", "checksum"})),
    "tis-spi": (True, False, frozenset({"hz", "locality"})),
    "mssim+serial": (True, False, frozenset({"baud"})),
    "mssim+socket": (False, True, frozenset()),
    "mssim+rfc2217": (False, True, frozenset({"baud"})),
    "serial": (True, False, frozenset({"baud"})),
    "socket": (False, True, frozenset()),
    "rfc2217": (False, True, frozenset({"baud"})),
}

# the range every numeric parameter must lie in (a transport may narrow it); None: on/off
_PARAMETER_RANGES: Mapping[str, tuple[int, int] | None] = {
    "addr": (0x03, 0x77),
    "locality": (0, 4),
    "hz": (100_000, 50_000_000),
    "baud": (50, 4_000_000),
    "checksum": None,
}

SCHEMES = frozenset(_SHAPES)
_TCTI_NAMES = frozenset({"device", "swtpm", "mssim", "tabrmd"})  # tpm2-tss names, conf optional
_SIMULATOR_PORT = 2321


@dataclass(frozen=True)
class DeviceUrl:
    """A parsed device URL; `text` is what was written, kept for messages."""

    text: str
    scheme: str
    path: str = ""
    host: str | None = None
    port: int | None = None
    params: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def param_int(self, name: str, default: int, *, lo: int, hi: int) -> int:
        """Query parameter `name` as an integer in [lo, hi] (decimal or 0x hex), else `default`."""
        raw = self.params.get(name)
        if raw is None:
            return default
        try:
            value = int(raw, 0)
        except ValueError:
            value = None
        if value is None or not lo <= value <= hi:
            raise DeviceUrlError(
                f'device URL "{self.text}": {name}={raw} is not a number from {lo} to {hi}',
                hint=f"write {name}=0x2e for the usual TPM address" if name == "addr" else None,
            )
        return value

    def param_flag(self, name: str, default: bool) -> bool:
        """Query parameter `name` as on/off (also true/false, 1/0, yes/no), else `default`."""
        raw = self.params.get(name)
        if raw is None:
            return default
        flags = {"on": True, "true": True, "1": True, "yes": True}
        flags |= {"off": False, "false": False, "0": False, "no": False}
        if raw.lower() not in flags:
            raise DeviceUrlError(
                f'device URL "{self.text}": {name}={raw} is not on or off',
                hint=f"write {name}=on or {name}=off",
            )
        return flags[raw.lower()]

    @property
    def endpoint(self) -> str:
        """`host:port` for a network URL, else the device path."""
        if self.host is not None:
            return f"{self.host}:{self.port}"
        return self.path

    def __str__(self) -> str:
        return self.text


def parse_device_url(text: str) -> DeviceUrl:
    """The device URL `text` means; `DeviceUrlError` naming what is wrong and how to write it."""
    text = text.strip()
    scheme, sep, rest = text.partition(":")
    scheme = scheme.lower()
    if not sep and scheme in _TCTI_NAMES:
        return _tcti_form(text, scheme, "")
    if not sep or scheme not in _SHAPES:
        raise DeviceUrlError(f'"{text}" is not a device URL edgekeeper knows', hint=URL_HINT)
    if not rest.startswith("//"):
        return _tcti_form(text, scheme, rest)
    parts = urlsplit(text)
    needs_path, needs_address, known = _SHAPES[scheme]
    try:
        params = dict(
            parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
        )
    except ValueError:
        raise DeviceUrlError(
            f'device URL "{text}": the query "{parts.query}" is not name=value pairs',
            hint="join parameters with &, e.g. ?addr=0x2e&locality=0",
        ) from None
    unknown = sorted(set(params) - known)
    if unknown:
        takes = ", ".join(sorted(known)) or "no parameters"
        raise DeviceUrlError(
            f'device URL "{text}": unknown parameter {", ".join(unknown)}',
            hint=f"{scheme}:// takes {takes}",
        )
    frozen = MappingProxyType(params)
    _check_values(DeviceUrl(text, scheme, params=frozen))
    if needs_path:
        if parts.netloc or not parts.path.startswith("/"):
            raise DeviceUrlError(
                f'device URL "{text}" names no absolute device path',
                hint=f'write three slashes before the path: "{scheme}:///dev/…"',
            )
        return DeviceUrl(text, scheme, path=parts.path, params=frozen)
    if needs_address:
        try:
            host, port = parts.hostname, parts.port
        except ValueError:
            host, port = None, None
        if not host or port is None or parts.path not in ("", "/"):
            raise DeviceUrlError(
                f'device URL "{text}" names no host and port',
                hint=f'write "{scheme}://HOST:PORT", e.g. "{scheme}://127.0.0.1:{_SIMULATOR_PORT}"',
            )
        return DeviceUrl(text, scheme, host=host, port=port, params=frozen)
    raise AssertionError(f"scheme {scheme} has no shape")


def _check_values(url: DeviceUrl) -> None:
    for name in url.params:
        bounds = _PARAMETER_RANGES[name]
        if bounds is None:
            url.param_flag(name, False)
        else:
            url.param_int(name, bounds[0], lo=bounds[0], hi=bounds[1])


def _tcti_form(text: str, scheme: str, conf: str) -> DeviceUrl:
    """A tpm2-tss TCTI string (IoT Edge's `[tpm] tcti`): `device:PATH`, `swtpm:host=H,port=P`."""
    if scheme == "device":
        path = conf or "/dev/tpmrm0"
        if not path.startswith("/"):
            raise DeviceUrlError(
                f'TCTI "{text}" names no absolute device path', hint='e.g. "device:/dev/tpmrm0"'
            )
        return DeviceUrl(text, "device", path=path)
    if scheme == "tabrmd":
        return DeviceUrl(text, "tabrmd")
    if scheme in ("swtpm", "mssim"):
        host, port = _simulator_address(text, conf)
        return DeviceUrl(text, scheme, host=host, port=port)
    raise DeviceUrlError(
        f'"{text}" is not a device URL edgekeeper knows',
        hint=f'write "{scheme}://…" with two slashes; docs/transports.md lists the forms',
    )


def _simulator_address(text: str, conf: str) -> tuple[str, int]:
    host, port = "localhost", _SIMULATOR_PORT
    for item in filter(None, conf.split(",")):
        key, _, value = item.partition("=")
        if key == "host" and value:
            host = value
        elif key == "port":
            if not value.isdigit() or not 0 < int(value) < 65536:
                raise DeviceUrlError(
                    f'TCTI "{text}": port "{value}" is not a TCP port',
                    hint="use a port number between 1 and 65535",
                )
            port = int(value)
        else:
            raise DeviceUrlError(
                f'TCTI "{text}": unknown option "{item}"',
                hint='write "swtpm:host=127.0.0.1,port=2321" or "swtpm://127.0.0.1:2321"',
            )
    return host, port
