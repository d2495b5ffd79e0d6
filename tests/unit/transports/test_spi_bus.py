"""SPI buses: which one a path opens (a socket, a character device, anything else refused by
name), the bus-socket wire format byte for byte, TIS frames over a socket served by a small fake
SPI TPM (registers, wait states, refused transfers, chip select as spidev keeps it), and the kernel
path up to the ioctl: /dev/null refuses the spidev setup and is named as no SPI device."""

from __future__ import annotations

import errno
import os
import socket
import struct
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, cast

import pytest

from firmware._ffi import load_linux_bus
from firmware.transports.address import parse_device_url
from firmware.transports.errors import BusFault, DeviceUrlError
from firmware.transports.spi_bus import SocketSpiBus, SpidevBus, open_spi_bus
from firmware.transports.tis import Register, TisTransport
from firmware.transports.tis_spi import (
    FrameHeader,
    SpiRegisterPort,
    decode_header,
    open_tis_spi,
    register_address,
)

FIFO = register_address(Register.DATA_FIFO, 0)
WHERE = "the TIS-SPI TPM on test (10 MHz)"

if TYPE_CHECKING:
    from firmware._ffi._linux_bus import FFI as LinuxBusFFI
    from firmware._ffi._linux_bus import CData
    from firmware._ffi._linux_bus import Lib as LinuxBusLib


class FakeSpiTpm:
    """An SPI TPM on a bus socket, byte by byte: a 4-byte header, `waits` wait states per frame,
    then data; registers by address (DATA_FIFO a queue); `refuse` holds errnos for the next
    messages. Chip select as spidev: released at a message's end unless its last transfer has
    cs_change, and with any refused message."""

    def __init__(self, path: str, registers: dict[int, int], *, waits: int = 0) -> None:
        self.path = path
        self.registers = registers
        self.waits = waits
        self.fifo_out = bytearray()
        self.fifo_in = bytearray()
        self.refuse: list[int] = []
        self.requests: list[bytes] = []
        self.frames: list[FrameHeader] = []
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(path)
        self._listener.listen()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._thread.join(5)

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with conn:
                self._select()
                try:
                    while self._message(conn):
                        pass
                except OSError:
                    pass

    def _select(self) -> None:
        self._header = bytearray()
        self._waiting = 0
        self._offset = 0

    def _message(self, conn: socket.socket) -> bool:
        head = _read(conn, 1)
        if not head:
            return False
        request, rx, cs_change = bytearray(head), bytearray(), 0
        for _ in range(head[0]):
            raw = _read(conn, 7)
            size, cs_change, _hz = struct.unpack(">HBI", raw)
            tx = _read(conn, size)
            request += raw + tx
            rx += bytes(self._byte(b) for b in tx)
        self.requests.append(bytes(request))
        if self.refuse:
            conn.sendall(bytes([self.refuse.pop(0)]))
            self._select()
            return True
        conn.sendall(b"\0" + rx)
        if not cs_change:
            self._select()
        return True

    def _byte(self, mosi: int) -> int:
        if len(self._header) < 4:
            self._header.append(mosi)
            if len(self._header) < 4:
                return 0
            self.frames.append(decode_header(bytes(self._header)))
            self._waiting = self.waits
            return 0 if self._waiting else 1
        if self._waiting:
            self._waiting -= 1
            return 0 if self._waiting else 1
        header = self.frames[-1]
        address = header.address + self._offset
        self._offset += 1
        if header.address == FIFO and header.read:
            return self.fifo_out.pop(0) if self.fifo_out else 0xFF
        if header.address == FIFO:
            self.fifo_in.append(mosi)
        elif header.read:
            return self.registers.get(address, 0xFF)
        else:
            self.registers[address] = mosi
        return 0xFF


def _read(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            return data
        data += chunk
    return data


def _did_vid() -> dict[int, int]:
    base = register_address(Register.DID_VID, 0)
    values = bytes.fromhex("d1151b00") + b"\x16"  # vendor 0x15d1 (Infineon), device 0x001b, rid
    return {base + i: v for i, v in enumerate(values[:4])} | {base + 4: values[4]}


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    # A short directory: a unix socket's path is limited to 107 bytes.
    with tempfile.TemporaryDirectory(prefix="ek-spi-") as name:
        yield Path(name)


@pytest.fixture
def fake(socket_dir: Path) -> Iterator[FakeSpiTpm]:
    tpm = FakeSpiTpm(str(socket_dir / "spi.sock"), _did_vid())
    yield tpm
    tpm.stop()


def _deadline() -> float:
    return time.monotonic() + 5


def test_the_wire_format_of_a_frame(fake: FakeSpiTpm) -> None:
    bus = SocketSpiBus(fake.path, 2_000_000, WHERE)
    try:
        assert bus.clock(bytes.fromhex("83d40f00"), hold=True, deadline=_deadline()) == b"\0\0\0\1"
        assert bus.clock(bytes(4), hold=False, deadline=_deadline()) == bytes.fromhex("d1151b00")
        bus.release(_deadline())
    finally:
        bus.close()
    assert fake.requests == [
        bytes.fromhex("01000401001e848083d40f00"),
        bytes.fromhex("01000400001e848000000000"),
        bytes.fromhex("01000000001e8480"),
    ]


@pytest.mark.parametrize("waits", [0, 1, 7, 256])
def test_registers_through_wait_states(fake: FakeSpiTpm, waits: int) -> None:
    fake.waits = waits
    port = SpiRegisterPort(SocketSpiBus(fake.path, 10_000_000, WHERE))
    try:
        assert port.read(Register.DID_VID, 4, _deadline()) == bytes.fromhex("d1151b00")
        port.write(Register.ACCESS, b"\x02", _deadline())
        assert port.read(Register.ACCESS, 1, _deadline()) == b"\x02"
        fake.fifo_out += bytes(range(100))
        assert port.read(Register.DATA_FIFO, 100, _deadline()) == bytes(range(100))
        port.write(Register.DATA_FIFO, bytes(range(70)), _deadline())
    finally:
        port.close()
    assert fake.fifo_in == bytes(range(70))
    assert [h.size for h in fake.frames if h.address == FIFO] == [64, 36, 64, 6]


def test_wait_states_past_the_bound_are_a_bus_fault(fake: FakeSpiTpm) -> None:
    fake.waits = 40
    port = SpiRegisterPort(SocketSpiBus(fake.path, 10_000_000, WHERE), wait_limit=30)
    with pytest.raises(BusFault, match="still in wait states after 30 polls"):
        port.read(Register.STS, 4, _deadline())
    port.close()
    # Each stalled frame: the header, 30 polls, then an empty transfer releasing CS.
    assert len(fake.requests) == 2 * 32
    assert fake.requests[31] == bytes.fromhex("0100000000989680")


def test_a_refused_message_is_retried_then_a_bus_fault(fake: FakeSpiTpm) -> None:
    port = SpiRegisterPort(SocketSpiBus(fake.path, 10_000_000, WHERE))
    fake.refuse = [5]
    assert port.read(Register.RID, 1, _deadline()) == b"\x16"
    fake.refuse = [5, 5]
    with pytest.raises(BusFault) as caught:
        port.read(Register.RID, 1, _deadline())
    assert f"{WHERE}: reading RID failed 2 times" in caught.value.message
    assert "errno 5" in caught.value.message
    port.close()


def test_open_tis_spi_over_a_socket_identifies_the_tpm(fake: FakeSpiTpm) -> None:
    fake.waits = 2
    transport = open_tis_spi(parse_device_url(f"tis-spi://{fake.path}?hz=1000000"))
    try:
        assert isinstance(transport, TisTransport)
        assert transport.where == f"the TIS-SPI TPM on {fake.path} (1 MHz)"
        identity = transport.identify(_deadline())
    finally:
        transport.close()
    assert (identity.vendor_id, identity.device_id, identity.revision) == (0x15D1, 0x1B, 0x16)


def test_locality_moves_the_addresses(fake: FakeSpiTpm) -> None:
    fake.registers[register_address(Register.STS, 3)] = 0x80
    transport = open_tis_spi(parse_device_url(f"tis-spi://{fake.path}?locality=3"))
    assert isinstance(transport, TisTransport)
    assert transport.port.read(Register.STS, 1, _deadline()) == b"\x80"
    transport.close()
    assert fake.frames[-1] == FrameHeader(True, 1, 0xD43018)


@pytest.mark.parametrize(
    ("query", "problem"), [("hz=50", "hz=50 is not a number"), ("locality=5", "locality=5")]
)
def test_url_parameters_are_checked(query: str, problem: str) -> None:
    with pytest.raises(DeviceUrlError, match=problem):
        open_tis_spi(parse_device_url(f"tis-spi:///dev/spidev0.1?{query}"))


def test_a_missing_device_is_named(socket_dir: Path) -> None:
    path = str(socket_dir / "spidev9.9")
    with pytest.raises(BusFault, match=f"{path} does not exist"):
        open_spi_bus(path, 10_000_000, WHERE)


@pytest.mark.parametrize("kind", ["file", "directory"])
def test_a_path_that_is_no_bus_is_refused_by_name(socket_dir: Path, kind: str) -> None:
    path = socket_dir / "not-a-bus"
    if kind == "file":
        path.write_bytes(b"")
    else:
        path.mkdir()
    with pytest.raises(DeviceUrlError, match=f"{path} is neither an SPI device nor a bus socket"):
        open_spi_bus(str(path), 10_000_000, WHERE)


def test_dev_null_is_not_an_spi_device() -> None:
    """The real ioctl path: /dev/null is a character device and refuses the spidev setup."""
    with pytest.raises(DeviceUrlError) as caught:
        open_tis_spi(parse_device_url("tis-spi:///dev/null"))
    assert "/dev/null is not an SPI device" in caught.value.message
    assert "the TIS-SPI TPM on /dev/null (10 MHz)" in caught.value.message


def test_a_refused_setup_closes_the_device() -> None:
    before = set(os.listdir("/proc/self/fd"))
    for _ in range(3):
        with pytest.raises(DeviceUrlError):
            SpidevBus(os.devnull, 10_000_000, WHERE)
    assert set(os.listdir("/proc/self/fd")) <= before


class FakeSpidev:
    """The kernel's side of the two spidev calls, over the real cffi structures: what setup
    was asked, each transfer's fields and MOSI bytes; MISO is the MOSI bytes inverted."""

    SPI_MODE_0 = 0

    def __init__(self, ffi: LinuxBusFFI, *, setup_rc: int = 0, message_rc: int = 0) -> None:
        self.ffi = ffi
        self.setup_rc = setup_rc
        self.message_rc = message_rc
        self.setups: list[tuple[int, int, int]] = []
        self.transfers: list[tuple[bytes, int, int, int, int]] = []

    def ek_spi_setup(self, fd: int, mode: int, bits: int, hz: int) -> int:
        os.fstat(fd)  # a real, open descriptor
        self.setups.append((mode, bits, hz))
        return self.setup_rc

    def ek_spi_message(self, fd: int, xfers: CData, count: int) -> int:
        assert count == 1
        xfer = xfers[0]
        size = xfer.len
        tx = b""
        if size:
            tx = bytes(self.ffi.buffer(self.ffi.cast("uint8_t *", xfer.tx_buf), size))
            rx = self.ffi.buffer(self.ffi.cast("uint8_t *", xfer.rx_buf), size)
            rx[0:size] = bytes(b ^ 0xFF for b in tx)
        else:
            assert (xfer.tx_buf, xfer.rx_buf) == (0, 0)
        self.transfers.append(
            (tx, xfer.speed_hz, xfer.bits_per_word, xfer.cs_change, xfer.delay_usecs)
        )
        return self.message_rc


@pytest.fixture
def linux_ffi() -> LinuxBusFFI:
    return load_linux_bus()[0]


def _spidev(kernel: FakeSpidev) -> SpidevBus:
    return SpidevBus(
        os.devnull, 4_000_000, WHERE, binding=(kernel.ffi, cast("LinuxBusLib", kernel))
    )


def test_spidev_transfers_fill_the_kernel_structure(linux_ffi: LinuxBusFFI) -> None:
    kernel = FakeSpidev(linux_ffi)
    bus = _spidev(kernel)
    assert kernel.setups == [(0, 8, 4_000_000)]
    assert bus.clock(bytes.fromhex("83d40018"), hold=True, deadline=_deadline()) == bytes.fromhex(
        "7c2bffe7"
    )
    assert bus.clock(b"\x00" * 64, hold=False, deadline=_deadline()) == b"\xff" * 64
    bus.release(_deadline())
    bus.close()
    bus.close()
    assert kernel.transfers == [
        (bytes.fromhex("83d40018"), 4_000_000, 8, 1, 0),
        (bytes(64), 4_000_000, 8, 0, 0),
        (b"", 4_000_000, 8, 0, 0),
    ]
    with pytest.raises(BusFault, match="the SPI device is closed"):
        bus.clock(b"\0", hold=False, deadline=_deadline())


def test_a_spidev_errno_is_retried_then_a_bus_fault(linux_ffi: LinuxBusFFI) -> None:
    kernel = FakeSpidev(linux_ffi, message_rc=-errno.ETIMEDOUT)
    port = SpiRegisterPort(_spidev(kernel))
    with pytest.raises(BusFault, match=r"reading STS failed 2 times: .* \(errno 110\)"):
        port.read(Register.STS, 4, _deadline())
    assert len(kernel.transfers) == 2
    port.close()


def test_a_spidev_that_refuses_the_clock_is_named(linux_ffi: LinuxBusFFI) -> None:
    kernel = FakeSpidev(linux_ffi, setup_rc=-errno.EINVAL)
    with pytest.raises(BusFault, match="refused SPI mode 0, 8 bits per word, 4000000 Hz"):
        _spidev(kernel)
