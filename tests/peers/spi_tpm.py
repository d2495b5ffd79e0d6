"""A TPM on an SPI bus (TCG PTP "SPI hardware protocol"), served on a bus socket with the transfers
the kernel's `SPI_IOC_MESSAGE` carries, backed by swtpm.

A frame is one chip-select period. Its first 4 MOSI bytes are the header: byte 0 = 0x80 for a read
(0x00 for a write) | (size - 1), size 1..64; bytes 1..3 = the 24-bit address 0xD4_0000 |
locality << 12 | register (TIS offsets). The bus is full duplex: the device answers one MISO byte
per MOSI byte. MISO is 0x00 during the header except the 4th byte, whose bit 0 says whether the
data follows at once (1) or the TPM inserts wait states (0): the host then clocks single bytes,
answered 0x00 while the TPM waits, until one has bit 0 set (0x01); the data phase follows. With
`faults.wait_states(n)`, n bytes are clocked after the header before the data (the nth is 0x01).
A FIFO write frame larger than burstCount is held in wait states for good: the TPM cannot take it.
A write takes effect once its last data byte is in; a frame cut short by the chip select is
dropped. Bytes after the data phase are ignored (MISO 0xFF); so is a frame whose address is not
0xD4xxxx or names locality 5 or above (MISO 0xFF, as a bus nobody drives).

Chip select as spidev: asserted when a message starts; released after a transfer with cs_change=1
that is not the message's last, and at the end of the message unless its last transfer has
cs_change=1 (then the frame continues into the next message). A failed message (an injected bus
error) and a client that goes away release it too.
"""

from __future__ import annotations

import errno
import struct
from pathlib import Path

from tests.peers import tis_device as tis
from tests.peers.bus_server import BusTpm, ReadExact

SPI_MAX_TRANSFERS = 16
READ_FLAG = 0x80
ADDRESS_BASE = 0xD40000
FLOATING = 0xFF  # MISO nobody drives
WAIT_FOREVER = -1


class _Frame:
    """One chip-select period of the device: header, wait states, data."""

    def __init__(self, device: tis.TisDevice, faults: tis.Faults) -> None:
        self.device = device
        self.faults = faults
        self.header = bytearray()
        self.valid = False
        self.reading = False
        self.size = 0
        self.locality = 0
        self.offset = 0
        self.waits = 0  # wait-state bytes still to clock; WAIT_FOREVER for a FIFO overrun
        self.data = bytearray()  # write: the bytes in so far; read: the bytes to send
        self.position = 0  # data bytes clocked

    def clock(self, mosi: int) -> int:
        if len(self.header) < 4:
            self.header.append(mosi)
            return self._decode() if len(self.header) == 4 else 0x00
        if not self.valid or self.position >= self.size:
            return FLOATING
        if self.waits == WAIT_FOREVER:
            return 0x00
        if self.waits:
            self.waits -= 1
            return 0x01 if self.waits == 0 else 0x00
        return self._data(mosi)

    def _decode(self) -> int:
        first, address = self.header[0], int.from_bytes(self.header[1:], "big")
        self.reading = bool(first & READ_FLAG)
        self.size = (first & 0x3F) + 1
        self.locality = (address >> 12) & 0xF
        self.offset = address & 0xFFF
        self.valid = address & 0xFF0000 == ADDRESS_BASE and self.locality < tis.LOCALITIES
        if not self.valid:
            return FLOATING
        self.waits = self.faults.wait_state_count
        if (
            not self.reading
            and tis.REG_DATA_FIFO <= self.offset < tis.REG_DATA_FIFO + 4
            and self.device.accepting(self.locality)
            and self.size > self.device.burst_count()
        ):
            self.waits = WAIT_FOREVER
        return 0x00 if self.waits else 0x01

    def _data(self, mosi: int) -> int:
        if self.reading:
            if self.position == 0:
                self.data = bytearray(self.device.read(self.locality, self.offset, self.size))
            miso = self.data[self.position]
        else:
            self.data.append(mosi)
            miso = 0x00
        self.position += 1
        if not self.reading and self.position == self.size:
            self.device.write(self.locality, self.offset, bytes(self.data))
        return miso


class SpiTpm(BusTpm):
    """An SPI TPM on the bus socket `path`, executing on swtpm at host:port."""

    def __init__(
        self,
        path: Path,
        swtpm_host: str,
        swtpm_port: int,
        ctrl_port: int | None = None,
        burst: int = 48,
    ) -> None:
        self._frame: _Frame | None = None
        super().__init__(path, swtpm_host, swtpm_port, ctrl_port, burst, "spi-tpm")

    @property
    def selected(self) -> bool:
        """Chip select is asserted (a frame is open across messages)."""
        return self._frame is not None

    # The bus socket.

    def handle(self, read_exact: ReadExact) -> bytes:
        count = read_exact(1)[0]
        transfers = []
        for _ in range(count):
            length, cs_change, _speed_hz = struct.unpack(">HBI", read_exact(7))
            transfers.append((read_exact(length), bool(cs_change)))
        if not 1 <= count <= SPI_MAX_TRANSFERS:
            return bytes([errno.EINVAL])
        status, data = self.message(transfers)
        return bytes([status]) + (data if status == 0 else b"")

    def disconnected(self) -> None:
        self._frame = None

    def message(self, transfers: list[tuple[bytes, bool]]) -> tuple[int, bytes]:
        """One SPI_IOC_MESSAGE of (tx bytes, cs_change) transfers: (errno, all rx bytes)."""
        failure = self.faults.take_failure()
        if failure:
            self._frame = None
            return failure, b""
        rx = bytearray()
        for index, (tx, cs_change) in enumerate(transfers):
            if self._frame is None:
                self._frame = _Frame(self.device, self.faults)
            rx += bytes(self._frame.clock(byte) for byte in tx)
            last = index == len(transfers) - 1
            if cs_change != last:  # a toggle between transfers, or no hold after the last one
                self._frame = None
        return 0, bytes(rx)
