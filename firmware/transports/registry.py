"""Which transport opens which device URL: one table from URL scheme to the module that speaks it.

Each bus module is imported only when a URL of its scheme is opened, so a gateway whose TPM sits
behind the kernel's driver never loads bus code.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from firmware.transports.address import DeviceUrl
from firmware.transports.errors import DeviceUrlError
from firmware.transports.transport import Transport


def _tis_i2c(url: DeviceUrl) -> Transport:
    from firmware.transports.tis_i2c import open_tis_i2c  # deferred: bus code, only when used

    return open_tis_i2c(url)


def _tis_spi(url: DeviceUrl) -> Transport:
    from firmware.transports.tis_spi import open_tis_spi  # deferred: bus code, only when used

    return open_tis_spi(url)


def _serial_frames(url: DeviceUrl) -> Transport:
    from firmware.transports.serial_frames import open_serial_frames  # deferred: pyserial

    return open_serial_frames(url)


OPENERS: Mapping[str, Callable[[DeviceUrl], Transport]] = {
    "tis-i2c": _tis_i2c,
    "tis-spi": _tis_spi,
    "mssim+serial": _serial_frames,
    "mssim+socket": _serial_frames,
    "mssim+rfc2217": _serial_frames,
}


def open_transport(url: DeviceUrl) -> Transport:
    """The transport for `url`, opened; `DeviceUrlError` when edgekeeper drives no such device."""
    opener = OPENERS.get(url.scheme)
    if opener is None:
        raise DeviceUrlError(
            f'"{url}" is not a device edgekeeper drives itself',
            hint="use tis-i2c://, tis-spi:// or mssim+serial:// (docs/transports.md)",
        )
    return opener(url)
