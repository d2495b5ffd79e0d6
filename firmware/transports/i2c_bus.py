"""I²C buses for TIS over I²C: one combined transfer of messages to a 7-bit address, as `I2C_RDWR`.

A bus is reached in one of two ways, chosen by what the device path is: a character device is a
kernel i2c-dev adapter (`I2C_FUNCS` must report plain I²C transfers, then `I2C_RDWR` through the
cffi extension); a unix socket is a simulated bus or a board farm's bus bridge speaking the
bus-socket wire format (`bus_socket`): `u8 count`, per message `u16 addr, u16 flags, u16 len`
and the bytes of a write; the reply is the errno byte, then the bytes of every read message.

Both carry the same thing: `transfer(messages)` is one transaction, repeated starts between its
messages and one STOP at the end, returning the bytes read. A transfer the bus refuses raises
`OSError` with the kernel's errno: ENXIO or EREMOTEIO when the device did not acknowledge (a NAK),
EIO, ETIMEDOUT or EAGAIN for a bus error. Retrying is the caller's business (`tis_i2c`).
"""

from __future__ import annotations

import errno
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from firmware.transports.bus_node import NodeKind, ioctl_binding, node_kind, open_device
from firmware.transports.bus_socket import BusSocket
from firmware.transports.errors import BusFault, DeviceUrlError

if TYPE_CHECKING:
    from firmware._ffi._linux_bus import FFI, Lib

I2C_M_RD = 0x0001  # i2c_msg.flags: a read (linux/i2c.h)
MAX_MESSAGES = 42  # I2C_RDWR_IOCTL_MAX_MSGS
MAX_MESSAGE_SIZE = 0xFFFF  # i2c_msg.len is a u16

NAK_ERRNOS = frozenset(
    {errno.ENXIO, errno.EREMOTEIO}
)  # the address or a data byte not acknowledged
BUS_ERROR_ERRNOS = frozenset({errno.EIO, errno.ETIMEDOUT, errno.EAGAIN})  # EAGAIN: arbitration lost

NOT_I2C_HINT = "tis-i2c:// takes an I²C adapter such as /dev/i2c-1 or a simulated bus's socket"

_REQUEST_HEAD = struct.Struct(">B")
_MESSAGE_HEAD = struct.Struct(">HHH")


@dataclass(frozen=True)
class I2cMessage:
    """One message of a transfer: a write of `data`, or a read of `size` bytes, at `addr`."""

    addr: int
    read: bool
    data: bytes = b""
    size: int = 0

    @classmethod
    def write_of(cls, addr: int, data: bytes) -> I2cMessage:
        return cls(addr, read=False, data=data, size=len(data))

    @classmethod
    def read_of(cls, addr: int, size: int) -> I2cMessage:
        return cls(addr, read=True, size=size)


class I2cBus(Protocol):
    """One I²C adapter: `transfer` is one combined transaction and returns the bytes every read
    message got, in order; `OSError(errno)` when the bus refuses it. `close` is idempotent."""

    where: str

    def transfer(self, messages: Sequence[I2cMessage], deadline: float) -> bytes: ...

    def close(self) -> None: ...


def open_i2c_bus(path: str, where: str) -> I2cBus:
    """The bus at `path`: an i2c-dev character device or a bus socket; `BusFault` when nothing
    is there, `DeviceUrlError` when it is something else."""
    kind = node_kind(
        path,
        where,
        missing_hint="enable the I²C adapter and load i2c-dev (docs/transports.md)",
        other_hint=NOT_I2C_HINT,
        bus="an I²C adapter",
    )
    if kind is NodeKind.DEVICE:
        return I2cDevBus(path, where)
    return SocketI2cBus(path, where)


def _check(messages: Sequence[I2cMessage]) -> None:
    if not 1 <= len(messages) <= MAX_MESSAGES:
        raise ValueError(f"an I²C transfer takes 1 to {MAX_MESSAGES} messages, not {len(messages)}")
    for message in messages:
        if message.size > MAX_MESSAGE_SIZE:
            raise ValueError(f"an I²C message of {message.size} bytes is over {MAX_MESSAGE_SIZE}")


class SocketI2cBus:
    """An I²C bus behind a bus socket: one request per `I2C_RDWR` the kernel would see."""

    def __init__(self, path: str, where: str) -> None:
        self.where = where
        self._socket = BusSocket(path, where)

    def transfer(self, messages: Sequence[I2cMessage], deadline: float) -> bytes:
        _check(messages)
        request = bytearray(_REQUEST_HEAD.pack(len(messages)))
        for message in messages:
            flags = I2C_M_RD if message.read else 0
            request += _MESSAGE_HEAD.pack(message.addr, flags, message.size)
            if not message.read:
                request += message.data
        reply_size = sum(message.size for message in messages if message.read)
        return self._socket.transact(bytes(request), reply_size, deadline)

    def close(self) -> None:
        self._socket.close()


class I2cDevBus:
    """A kernel i2c-dev adapter, checked for plain I²C transfers when opened; `binding` is the
    cffi extension's `(ffi, lib)`, loaded when not given."""

    def __init__(self, path: str, where: str, *, binding: tuple[FFI, Lib] | None = None) -> None:
        self.where = where
        self.path = path
        ffi, lib = binding or ioctl_binding(where)
        self._ffi, self._lib = ffi, lib
        self._fd: int | None = open_device(
            path,
            where,
            group_hint="run edgekeeper in the group that owns the I²C adapter (often `i2c`)",
        )
        funcs = ffi.new("unsigned long *")
        rc = lib.ek_i2c_funcs(self._fd, funcs)
        if rc < 0 or not funcs[0] & lib.I2C_FUNC_I2C:
            self.close()
            reason = os.strerror(-rc) if rc < 0 else "it cannot do plain I²C transfers"
            raise DeviceUrlError(
                f"{where}: {path} is not an I²C adapter ({reason})", hint=NOT_I2C_HINT
            )

    def transfer(self, messages: Sequence[I2cMessage], deadline: float) -> bytes:
        # The ioctl cannot be bounded by the deadline; the adapter's own timeout bounds it.
        if self._fd is None:
            raise BusFault(f"{self.where}: the I²C adapter is closed")
        _check(messages)
        ffi = self._ffi
        msgs = ffi.new("struct i2c_msg[]", len(messages))
        buffers = []
        for index, message in enumerate(messages):
            buffer = ffi.new("uint8_t[]", message.size if message.read else message.data)
            buffers.append((message.read, message.size, buffer))
            slot = msgs[index]
            slot.addr = message.addr
            slot.flags = self._lib.I2C_M_RD if message.read else 0
            slot.len = message.size
            slot.buf = buffer
        rc = self._lib.ek_i2c_rdwr(self._fd, msgs, len(messages))
        if rc < 0:
            raise OSError(-rc, os.strerror(-rc))
        return b"".join(bytes(ffi.buffer(buf, size)) for read, size, buf in buffers if read)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
