"""SPI buses for TIS over SPI: clock bytes out, the device's bytes back, chip select held or not.

A bus is reached in one of two ways, chosen by what the device path is: a character device is a
kernel spidev node (`SPI_IOC_MESSAGE` through the cffi extension); a unix socket is a simulated
bus or a board farm's bus bridge speaking the bus-socket wire format (`bus_socket`). Both carry
the same thing: one SPI message of one transfer per `clock` call, full duplex, chip select
asserted at the start and released at the end unless `hold` asks to keep it asserted.

Why hold CS across messages (tpm2-tss's tcti-spidev does the same): a TIS frame is one
CS-asserted period, and the TPM says only in the last header byte whether it inserts wait
states, so the host has to look at that byte before it clocks the data phase. The kernel driver
does this inside `spi_bus_lock`; from user space each look is a separate ioctl, and spidev keeps
CS asserted after a message whose last transfer has `cs_change` set. So a frame is the header
(CS held), single-byte wait-state polls (CS held), then the data phase (CS released): two
messages when the TPM does not wait. An empty transfer without `cs_change` releases a held CS
(`release`). spidev does not lock the bus between ioctls: another user of the same controller
could slip a message in while CS is held, so a TPM's controller should have no other user.
"""

from __future__ import annotations

import errno
import os
import struct
from typing import TYPE_CHECKING, Protocol

from firmware.transports.bus_node import NodeKind, ioctl_binding, node_kind, open_device
from firmware.transports.bus_socket import BusSocket
from firmware.transports.errors import BusFault, DeviceUrlError

if TYPE_CHECKING:
    from firmware._ffi._linux_bus import FFI, Lib

BITS_PER_WORD = 8

NOT_SPI_HINT = "tis-spi:// takes a spidev node such as /dev/spidev0.1 or a simulated bus's socket"

_REQUEST_HEAD = struct.Struct(">B")
_TRANSFER_HEAD = struct.Struct(">HBI")


class SpiBus(Protocol):
    """One SPI device: `clock` sends `tx` as one message of one transfer and returns as many
    bytes as the device drove on MISO; `hold` keeps chip select asserted after it. A transfer
    the bus refuses raises `OSError` with the kernel's errno (chip select is then released);
    `release` ends a held chip select. `close` is idempotent."""

    where: str

    def clock(self, tx: bytes, *, hold: bool, deadline: float) -> bytes: ...

    def release(self, deadline: float) -> None: ...

    def close(self) -> None: ...


def open_spi_bus(path: str, hz: int, where: str) -> SpiBus:
    """The bus at `path`: a spidev character device or a bus socket; `BusFault` when nothing is
    there, `DeviceUrlError` when it is something else."""
    kind = node_kind(
        path,
        where,
        missing_hint="enable SPI and the spidev node of the TPM's chip select (docs/transports.md)",
        other_hint=NOT_SPI_HINT,
        bus="an SPI device",
    )
    if kind is NodeKind.DEVICE:
        return SpidevBus(path, hz, where)
    return SocketSpiBus(path, hz, where)


class SocketSpiBus:
    """An SPI bus behind a bus socket: one request per `SPI_IOC_MESSAGE` the kernel would see."""

    def __init__(self, path: str, hz: int, where: str) -> None:
        self.where = where
        self.hz = hz
        self._socket = BusSocket(path, where)

    def clock(self, tx: bytes, *, hold: bool, deadline: float) -> bytes:
        request = _REQUEST_HEAD.pack(1) + _TRANSFER_HEAD.pack(len(tx), int(hold), self.hz) + tx
        return self._socket.transact(request, len(tx), deadline)

    def release(self, deadline: float) -> None:
        self.clock(b"", hold=False, deadline=deadline)

    def close(self) -> None:
        self._socket.close()


class SpidevBus:
    """A kernel spidev node, set to mode 0, 8 bits per word and `hz` when opened; `binding` is
    the cffi extension's `(ffi, lib)`, loaded when not given."""

    def __init__(
        self, path: str, hz: int, where: str, *, binding: tuple[FFI, Lib] | None = None
    ) -> None:
        self.where = where
        self.path = path
        self.hz = hz
        ffi, lib = binding or ioctl_binding(where)
        self._ffi, self._lib = ffi, lib
        self._fd: int | None = open_device(
            path,
            where,
            group_hint="run edgekeeper in the group that owns the spidev node (often `spi`)",
        )
        rc = lib.ek_spi_setup(self._fd, lib.SPI_MODE_0, BITS_PER_WORD, hz)
        if rc < 0:
            self.close()
            raise _setup_error(where, path, hz, -rc)

    def clock(self, tx: bytes, *, hold: bool, deadline: float) -> bytes:
        # The ioctl itself cannot be bounded; it clocks at most 64 bytes, so it is microseconds.
        if self._fd is None:
            raise BusFault(f"{self.where}: the SPI device is closed")
        ffi, size = self._ffi, len(tx)
        tx_buf = ffi.new("uint8_t[]", tx) if size else ffi.NULL
        rx_buf = ffi.new("uint8_t[]", size) if size else ffi.NULL
        transfer = ffi.new("struct spi_ioc_transfer *")
        transfer.tx_buf = int(ffi.cast("uintptr_t", tx_buf))
        transfer.rx_buf = int(ffi.cast("uintptr_t", rx_buf))
        transfer.len = size
        transfer.speed_hz = self.hz
        transfer.bits_per_word = BITS_PER_WORD
        transfer.cs_change = int(hold)
        rc = self._lib.ek_spi_message(self._fd, transfer, 1)
        if rc < 0:
            raise OSError(-rc, os.strerror(-rc))
        return bytes(ffi.buffer(rx_buf, size)) if size else b""

    def release(self, deadline: float) -> None:
        self.clock(b"", hold=False, deadline=deadline)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _setup_error(where: str, path: str, hz: int, errno_value: int) -> BusFault | DeviceUrlError:
    if errno_value == errno.ENOTTY:
        return DeviceUrlError(
            f"{where}: {path} is not an SPI device (it refused the spidev ioctls: "
            f"{os.strerror(errno_value)})",
            hint=NOT_SPI_HINT,
        )
    return BusFault(
        f"{where}: {path} refused SPI mode 0, {BITS_PER_WORD} bits per word, {hz} Hz: "
        f"{os.strerror(errno_value)}",
        hint="lower hz= in the device URL or check the SPI controller's driver",
    )
