"""A TPM on an I²C bus (TCG PTP I²C interface / TCG TPM I²C Interface Specification 1.00), served on
a bus socket with the transactions the kernel's `I2C_RDWR` carries, backed by swtpm.

The device answers at one 7-bit address (default 0x2E); a message to any other address is not
acknowledged (ENXIO) and ends the transaction, the messages before it having taken effect. A write
message is [register, data...]: the register byte sets the register pointer, the data (if any) is
written there. A read message reads from the pointer, which stays put (no auto-increment), so a
read works with a repeated start in the same transaction or in the next one. Multi-byte registers
are little-endian; DATA_CSUM is the CRC-16/KERMIT with its high byte first, as Linux and QEMU read
it (Linux compares it with `swab16(crc_ccitt(...))`). The locality is chosen with LOC_SEL.

Register map (I²C → TIS): LOC_SEL 0x00 (own), ACCESS 0x04 → 0x00, INT_ENABLE 0x08, INT_CAPABILITY
0x14 (own, 0), STS 0x18..0x1B (burstCount at 0x19, bits 31:26 read 0), DATA_FIFO 0x24,
INTERFACE_CAPABILITY 0x30 (own), DEVICE_ADDRESS 0x38 (read-only here: a change is refused with a
NAK), DATA_CSUM_ENABLE 0x40, DATA_CSUM 0x44, DID_VID 0x48 → 0xF00, RID 0x4C → 0xF04. A write to
any other register is NAKed (EREMOTEIO). While the TPM takes command bytes, a FIFO write longer than
burstCount is NAKed after the burstCount-th byte (the bytes before it are taken); FIFO writes the
TPM does not expect (no commandReady, past the command's size) are acknowledged and dropped.
"""

from __future__ import annotations

import errno
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.peers import tis_device as tis
from tests.peers.bus_server import BusTpm, ReadExact

I2C_M_RD = 0x0001
I2C_M_TEN = 0x0010
I2C_RDWR_MAX_MSGS = 42
I2C_MAX_MSG_LEN = 8192

REG_LOC_SEL = 0x00
REG_ACCESS = 0x04
REG_INT_ENABLE = 0x08
REG_INT_CAPABILITY = 0x14
REG_STS = 0x18
REG_DATA_FIFO = 0x24
REG_INTERFACE_CAPABILITY = 0x30
REG_DEVICE_ADDRESS = 0x38
REG_DATA_CSUM_ENABLE = 0x40
REG_DATA_CSUM = 0x44
REG_DID_VID = 0x48
REG_RID = 0x4C
REGISTERS = {
    REG_LOC_SEL: 1,
    REG_ACCESS: 1,
    REG_INT_ENABLE: 4,
    REG_INT_CAPABILITY: 4,
    REG_STS: 4,
    REG_STS + 1: 3,
    REG_STS + 2: 2,
    REG_STS + 3: 1,
    REG_DATA_FIFO: 0,  # any length
    REG_INTERFACE_CAPABILITY: 4,
    REG_DEVICE_ADDRESS: 2,
    REG_DATA_CSUM_ENABLE: 1,
    REG_DATA_CSUM: 2,
    REG_DID_VID: 4,
    REG_RID: 1,
}
STS_READ_MASK = 0x03FFFFFF  # bits 31:26 are reserved on I²C

# INTERFACE_CAPABILITY: FIFO interface (3:0 = 2), I²C interface 1.0 (6:4 = 0), TPM 2.0 (8:7 = 01),
# standard and fast mode (22:21 = 11), localities 0-4 (26:25 = 01), no address change (28:27 = 0);
# guard time in µs at 16:9 with its WW/WR/RW/RR (17..20) and SR (30) flags when it is not 0.
CAPABILITY_BASE = 0x2 | 0x1 << 7 | 0x3 << 21 | 0x1 << 25
GUARD_FLAGS = 0xF << 17 | 1 << 30


@dataclass(frozen=True)
class I2cMessage:
    addr: int
    flags: int
    length: int
    data: bytes  # empty for a read

    @property
    def read(self) -> bool:
        return bool(self.flags & I2C_M_RD)


class I2cTpm(BusTpm):
    """An I²C TPM at `address` on the bus socket `path`, executing on swtpm at host:port."""

    def __init__(
        self,
        path: Path,
        swtpm_host: str,
        swtpm_port: int,
        ctrl_port: int | None = None,
        address: int = 0x2E,
        burst: int = 32,
        guard_time_us: int = 0,
    ) -> None:
        if not 0 <= guard_time_us <= 0xFF:
            raise ValueError(f"guard_time_us {guard_time_us} does not fit 8 bits")
        self.address = address
        self.guard_time_us = guard_time_us
        self.loc_sel = 0
        self.pointer = REG_LOC_SEL
        self._last_end = 0.0
        super().__init__(path, swtpm_host, swtpm_port, ctrl_port, burst, "i2c-tpm")

    # The bus socket.

    def handle(self, read_exact: ReadExact) -> bytes:
        count = read_exact(1)[0]
        messages = []
        for _ in range(count):
            addr, flags, length = struct.unpack(">HHH", read_exact(6))
            data = b"" if flags & I2C_M_RD else read_exact(length)
            messages.append(I2cMessage(addr, flags, length, data))
        if not 1 <= count <= I2C_RDWR_MAX_MSGS or any(m.length > I2C_MAX_MSG_LEN for m in messages):
            return bytes([errno.EINVAL])
        status, data = self.transact(messages)
        return bytes([status]) + (data if status == 0 else b"")

    def disconnected(self) -> None:
        pass  # every I2C_RDWR ends with a STOP: nothing is left half-done

    def transact(self, messages: list[I2cMessage]) -> tuple[int, bytes]:
        """One I2C_RDWR: (errno, the bytes of every read message)."""
        try:
            failure = self.faults.take_failure()
            if failure:
                return failure, b""
            guard = self.faults.guard_s
            if guard is not None and time.monotonic() - self._last_end < guard:
                return errno.ENXIO, b""
            out = bytearray()
            for message in messages:
                if message.addr != self.address or message.flags & I2C_M_TEN:
                    return errno.ENXIO, b""
                if message.read:
                    out += self._read(message.length)
                else:
                    status = self._write(message.data)
                    if status:
                        return status, b""
            return 0, bytes(out)
        finally:
            self._last_end = time.monotonic()

    # Registers.

    def _write(self, data: bytes) -> int:
        if not data:
            return 0  # a quick write: the address was acknowledged, nothing else
        register, payload = data[0], data[1:]
        if register not in REGISTERS or (register == REG_DEVICE_ADDRESS and payload):
            return errno.EREMOTEIO
        self.pointer = register
        if not payload:
            return 0
        if register == REG_LOC_SEL:
            if payload[0] < tis.LOCALITIES:
                self.loc_sel = payload[0]
        elif register == REG_ACCESS:
            self.device.write(self.loc_sel, tis.REG_ACCESS, payload[:1])
        elif register == REG_INT_ENABLE:
            self.device.write(self.loc_sel, tis.REG_INT_ENABLE, payload[:4])
        elif register == REG_STS:
            self.device.write(self.loc_sel, tis.REG_STS, payload[:1])
        elif register == REG_DATA_FIFO:
            room = (
                self.device.burst_count() if self.device.accepting(self.loc_sel) else len(payload)
            )
            self.device.write(self.loc_sel, tis.REG_DATA_FIFO, payload[:room])
            if len(payload) > room:
                return errno.EREMOTEIO
        elif register == REG_DATA_CSUM_ENABLE:
            self.device.checksum_enabled = bool(payload[0] & 1)
        # the other registers are read-only: the data is acknowledged and ignored
        return 0

    def _read(self, length: int) -> bytes:
        register = self.pointer
        if register == REG_DATA_FIFO:
            return self.device.read(self.loc_sel, tis.REG_DATA_FIFO, length)
        value = self._value(register)
        width = REGISTERS[register]
        return (value.to_bytes(4, "little")[:width] + bytes(length))[:length]

    def _value(self, register: int) -> int:
        if REG_STS <= register <= REG_STS + 3:
            sts = int.from_bytes(self.device.read(self.loc_sel, tis.REG_STS, 4), "little")
            return (sts & STS_READ_MASK) >> (8 * (register - REG_STS))
        if register == REG_DATA_CSUM:
            crc = self.device.checksum()
            if self.faults.take_bad_checksum():
                crc ^= 0x5A5A
            return int.from_bytes(crc.to_bytes(2, "big"), "little")  # high byte first on the wire
        simple: dict[int, Callable[[], int]] = {
            REG_LOC_SEL: lambda: self.loc_sel,
            REG_ACCESS: lambda: self.device.read(self.loc_sel, tis.REG_ACCESS, 1)[0],
            REG_INTERFACE_CAPABILITY: self.capability,
            REG_DEVICE_ADDRESS: lambda: self.address,
            REG_DATA_CSUM_ENABLE: lambda: int(self.device.checksum_enabled),
            REG_DID_VID: lambda: tis.DID_VID,
            REG_RID: lambda: tis.RID,
        }
        return simple[register]() if register in simple else 0  # INT_ENABLE, INT_CAPABILITY

    def capability(self) -> int:
        """The INTERFACE_CAPABILITY register's value."""
        if not self.guard_time_us:
            return CAPABILITY_BASE
        return CAPABILITY_BASE | self.guard_time_us << 9 | GUARD_FLAGS
