"""TIS over I²C (TCG PC Client PTP, I²C interface): the TIS registers behind a 7-bit address.

The registers of the TCG I²C interface, each one byte of address (Linux tpm_tis_i2c.c, QEMU's
tpm_tis_i2c.c): LOC_SEL 0x00 (the locality every other register refers to), ACCESS 0x04,
INT_ENABLE 0x08, STS 0x18, DATA_FIFO 0x24, I2C_INTERFACE_CAPABILITY 0x30, DATA_CSUM_ENABLE 0x40,
DATA_CSUM 0x44, DID_VID 0x48, RID 0x4C. Multi-byte registers are little-endian.

Transactions. A register write is one message: the register address, then the data. A register
read is two transactions, as Linux does it: a write of the register address (STOP), the guard
time, then a read (STOP). Not one transaction with a repeated start: a TPM that is busy NAKs its
address, and a NAK on the read half of a combined transfer cannot be retried alone; separate
transactions let each be retried, and the guard-time flags (below) then cover every gap. Each
message carries at most 32 bytes (I2C_SMBUS_BLOCK_MAX, as Linux: some adapters take no more), so
FIFO bursts are at most 31 bytes (32 with the register address).

Guard time. After a transaction the TPM may need a pause before the next: 250 µs until
I2C_INTERFACE_CAPABILITY has been read, then its bits 16:9 (µs) for the pairs its flags name
(bit 17 write→write, 18 write→read, 19 read→write, 20 read→read), and 250 µs after any
failed transaction. The pause is kept lazily: only the part not already spent before the next
transaction is slept.

Retries. A NAK (ENXIO, EREMOTEIO) is how a busy TPM says "later": retried up to 50 times
(Linux's TPM_RETRY) with the guard time, within the deadline. A bus error (EIO, ETIMEDOUT,
EAGAIN) is retried once. What still fails is a `BusFault`. Reads of ACCESS, INT_ENABLE, STS and
the capability whose must-be-zero bits are set (Linux's sanity masks) are read again, bounded
the same way.

Checksum. With `checksum=on` (the default) DATA_CSUM_ENABLE is written 1 at open and read back:
the capability register has no checksum bit, so the read-back says whether the TPM has it.
DATA_CSUM then holds the CRC-16/KERMIT (polynomial 0x1021 reflected, init 0, no final XOR; check
value 0x2189) of the last FIFO data, command or response. Its two bytes arrive high byte first:
Linux reads DATA_CSUM as a little-endian u16 and compares it with swab16(crc_ccitt(0, data)),
which is the same as comparing the bytes with the CRC big-endian ("123456789" → 21 89).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from firmware.transports.address import DeviceUrl
from firmware.transports.errors import BusFault, TransportProtocolError, TransportTimeout
from firmware.transports.i2c_bus import (
    BUS_ERROR_ERRNOS,
    NAK_ERRNOS,
    I2cBus,
    I2cMessage,
    open_i2c_bus,
)
from firmware.transports.tis import Register, TisTimeouts, TisTransport
from firmware.transports.transport import Transport

DEFAULT_ADDRESS = 0x2E
LOC_SEL = 0x00
DATA_CSUM_ENABLE = 0x40
DATA_CSUM = 0x44
REGISTERS: dict[Register, int] = {
    Register.ACCESS: 0x04,
    Register.INT_ENABLE: 0x08,
    Register.STS: 0x18,
    Register.DATA_FIFO: 0x24,
    Register.INTERFACE_CAPABILITY: 0x30,
    Register.DID_VID: 0x48,
    Register.RID: 0x4C,
}
# Bits that must read 0 in the little-endian value of a 1-, 2- or 4-byte read (Linux's masks).
READ_ZERO: dict[int, int] = {0x04: 0x48, 0x08: 0x7FFFFF60, 0x18: 0x23, 0x30: 0x80000000}

BLOCK_MAX = 32  # bytes in one message (I2C_SMBUS_BLOCK_MAX)
GUARD_DEFAULT = 250e-6  # before the capability is known, and after a failed transaction
RETRIES = 50  # NAKs (and failed sanity checks) tolerated in a row, as Linux's TPM_RETRY
BUS_ERROR_RETRIES = 1
OPEN_TIMEOUT = 2.0  # seconds to open: the capability, LOC_SEL, the checksum, DID_VID

_GUARD_SHIFT, _GUARD_MASK = 9, 0xFF
_GUARD_WW, _GUARD_WR, _GUARD_RW, _GUARD_RR = 1 << 17, 1 << 18, 1 << 19, 1 << 20


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC_TABLE = _crc_table()


def crc16_kermit(data: bytes) -> int:
    """CRC-16/KERMIT of `data` (CCITT polynomial, reflected, init 0); "123456789" → 0x2189."""
    crc = 0
    for byte in data:
        crc = (crc >> 8) ^ _CRC_TABLE[(crc ^ byte) & 0xFF]
    return crc


@dataclass(frozen=True)
class GuardTimes:
    """The pause a TPM needs between two transactions, by what they are (read or write)."""

    seconds: float = GUARD_DEFAULT
    read_read: bool = True
    read_write: bool = True
    write_read: bool = True
    write_write: bool = True

    @classmethod
    def from_capability(cls, capability: int) -> GuardTimes:
        """The guard time and its flags from I2C_INTERFACE_CAPABILITY."""
        return cls(
            seconds=((capability >> _GUARD_SHIFT) & _GUARD_MASK) / 1e6,
            read_read=bool(capability & _GUARD_RR),
            read_write=bool(capability & _GUARD_RW),
            write_read=bool(capability & _GUARD_WR),
            write_write=bool(capability & _GUARD_WW),
        )

    def between(self, last_read: bool, next_read: bool) -> float:
        needed = {
            (True, True): self.read_read,
            (True, False): self.read_write,
            (False, True): self.write_read,
            (False, False): self.write_write,
        }[(last_read, next_read)]
        return self.seconds if needed else 0.0


@dataclass(frozen=True)
class _LastTransaction:
    ended: float
    read: bool
    failed: bool


class TisI2cPort:
    """The TIS registers of the TPM at `addr` on `bus`, as a `RegisterPort`; `open` must run
    first (it reads the guard time, selects the locality and sets up the checksum)."""

    max_burst = BLOCK_MAX - 1  # a FIFO write carries the register address too

    def __init__(
        self,
        bus: I2cBus,
        addr: int,
        *,
        where: str,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.bus = bus
        self.addr = addr
        self.where = where
        self.checksum = False
        self.guard = GuardTimes()
        self._sleep = sleep
        self._clock = clock
        self._last: _LastTransaction | None = None

    def open(self, *, locality: int, checksum: bool, deadline: float) -> None:
        capability_reg = REGISTERS[Register.INTERFACE_CAPABILITY]
        capability = int.from_bytes(self.read_at(capability_reg, 4, deadline), "little")
        self.guard = GuardTimes.from_capability(capability)
        self.write_at(LOC_SEL, bytes([locality]), deadline)
        self.write_at(DATA_CSUM_ENABLE, b"\x01" if checksum else b"\x00", deadline)
        self.checksum = checksum and self.read_at(DATA_CSUM_ENABLE, 1, deadline)[0] & 1 == 1

    # -- RegisterPort

    def read(self, register: Register, size: int, deadline: float) -> bytes:
        return self.read_at(REGISTERS[register], size, deadline)

    def write(self, register: Register, data: bytes, deadline: float) -> None:
        self.write_at(REGISTERS[register], data, deadline)

    def verify(self, data: bytes, deadline: float) -> bool:
        if not self.checksum:
            return True
        return self.read_at(DATA_CSUM, 2, deadline) == crc16_kermit(data).to_bytes(2, "big")

    def close(self) -> None:
        self.bus.close()

    # -- registers by address

    def read_at(self, reg: int, size: int, deadline: float) -> bytes:
        """`size` bytes of register `reg`, read again while must-be-zero bits are set."""
        if not 1 <= size <= BLOCK_MAX:
            raise ValueError(f"an I²C register read of {size} bytes (1 to {BLOCK_MAX})")
        for _ in range(RETRIES):
            self._transact(I2cMessage.write_of(self.addr, bytes([reg])), deadline)
            value = self._transact(I2cMessage.read_of(self.addr, size), deadline)
            if not _fails_sanity(reg, value):
                return value
            self._last = _LastTransaction(self._clock(), read=True, failed=True)
        raise TransportProtocolError(
            f"{self.where}: register {reg:#04x} read {value.hex()} {RETRIES} times, with bits set "
            "that must read 0",
            hint="the bus corrupts data; check the wiring, pull-ups and the bus speed",
        )

    def write_at(self, reg: int, data: bytes, deadline: float) -> None:
        if not 1 <= len(data) < BLOCK_MAX:
            raise ValueError(f"an I²C register write of {len(data)} bytes (1 to {BLOCK_MAX - 1})")
        self._transact(I2cMessage.write_of(self.addr, bytes([reg]) + data), deadline)

    # -- transactions

    def _transact(self, message: I2cMessage, deadline: float) -> bytes:
        """One message as one transaction, after the guard time; NAKs and a bus error retried."""
        naks = bus_errors = 0
        while True:
            self._keep_guard(message.read)
            if self._clock() >= deadline:
                raise TransportTimeout(
                    f"{self.where}: the command's deadline passed between I²C transactions",
                    hint="a longer deadline may help a slow TPM",
                )
            try:
                data = self.bus.transfer([message], deadline)
            except OSError as exc:
                self._last = _LastTransaction(self._clock(), message.read, failed=True)
                code = exc.errno or 0
                if code in NAK_ERRNOS:
                    naks += 1
                    if naks < RETRIES:
                        continue
                    raise BusFault(
                        f"{self.where} did not acknowledge {naks} times in a row ({exc.strerror})",
                        hint="check addr= in the device URL, the wiring and the TPM's power",
                    ) from None
                if code in BUS_ERROR_ERRNOS and bus_errors < BUS_ERROR_RETRIES:
                    bus_errors += 1
                    continue
                raise BusFault(
                    f"{self.where}: the I²C transfer failed: {exc.strerror}",
                    hint="check the wiring, pull-ups and the bus speed",
                ) from None
            self._last = _LastTransaction(self._clock(), message.read, failed=False)
            return data

    def _keep_guard(self, next_read: bool) -> None:
        last = self._last
        if last is None:
            return
        gap = GUARD_DEFAULT if last.failed else self.guard.between(last.read, next_read)
        left = last.ended + gap - self._clock()
        if left > 0:
            self._sleep(left)


def _fails_sanity(reg: int, value: bytes) -> bool:
    mask = READ_ZERO.get(reg)
    if mask is None or len(value) not in (1, 2, 4):
        return False
    return int.from_bytes(value, "little") & mask != 0


def open_tis_i2c(url: DeviceUrl) -> Transport:
    """The TPM a `tis-i2c://PATH?addr=&locality=&checksum=` URL names, opened and identified."""
    addr = url.param_int("addr", DEFAULT_ADDRESS, lo=0x03, hi=0x77)
    locality = url.param_int("locality", 0, lo=0, hi=4)
    checksum = url.param_flag("checksum", True)
    where = f"the TIS-I²C TPM at {addr:#04x} on {url.path}"
    if locality:
        where += f" (locality {locality})"
    bus = open_i2c_bus(url.path, where)
    try:
        port = TisI2cPort(bus, addr, where=where)
        deadline = time.monotonic() + OPEN_TIMEOUT
        port.open(locality=locality, checksum=checksum, deadline=deadline)
        transport = TisTransport(port, timeouts=TisTimeouts())
        transport.identify(deadline)
    except BaseException:
        bus.close()
        raise
    return transport
