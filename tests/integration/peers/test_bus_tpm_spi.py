"""The SPI TPM simulator driven with raw SPI_IOC_MESSAGE requests on its bus socket: TIS frames
(4-byte header, wait states, data) with chip select held across messages as spidev does, a whole
TPM command, and every injectable fault."""

from __future__ import annotations

import errno
import struct
import time

from tests.peers.raw_bus import GET_RANDOM_8, STARTUP_CLEAR, TPM_RC_INITIALIZE, RawBus
from tests.peers.spi_tpm import SpiTpm
from tests.peers.tis_device import DID_VID

ACCESS, STS, FIFO, DID_VID_REG = 0x000, 0x018, 0x024, 0xF00
ACTIVE, REQUEST_USE = 0x20, 0x02
STS_VALID, COMMAND_READY, GO, DATA_AVAIL, EXPECT = 0x80, 0x40, 0x20, 0x10, 0x08
MAX_POLLS = 50


def header(read: bool, offset: int, size: int, locality: int = 0) -> bytes:
    address = 0xD40000 | locality << 12 | offset
    return bytes([(0x80 if read else 0x00) | (size - 1)]) + address.to_bytes(3, "big")


def frame(bus: RawBus, head: bytes, tx: bytes) -> tuple[bytes, list[int]]:
    """Header with CS held, single-byte wait-state polls while bit 0 is 0, then the data phase
    ending the frame. (data MISO, the wait-state bytes seen)."""
    status, rx = bus.spi((head, True))
    assert status == 0
    waits: list[int] = []
    ready = rx[3] & 1
    while not ready:
        assert len(waits) < MAX_POLLS, "the TPM never ended its wait states"
        status, rx = bus.spi((b"\x00", True))
        assert status == 0
        waits.append(rx[0])
        ready = rx[0] & 1
    status, rx = bus.spi((tx, False))
    assert status == 0
    return rx, waits


def read(bus: RawBus, offset: int, size: int, locality: int = 0) -> bytes:
    return frame(bus, header(True, offset, size, locality), bytes(size))[0]


def write(bus: RawBus, offset: int, data: bytes, locality: int = 0) -> None:
    frame(bus, header(False, offset, len(data), locality), data)


def sts(bus: RawBus) -> tuple[int, int]:
    value = int.from_bytes(read(bus, STS, 4), "little")
    return value & 0xFF, (value >> 8) & 0xFFFF


def wait_sts(bus: RawBus, bits: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while sts(bus)[0] & bits != bits:
        assert time.monotonic() < deadline, f"STS never showed 0x{bits:02x}"
        time.sleep(0.002)


def claim_locality(bus: RawBus) -> None:
    write(bus, ACCESS, bytes([REQUEST_USE]))
    assert read(bus, ACCESS, 1)[0] & ACTIVE


def send(bus: RawBus, command: bytes) -> None:
    write(bus, STS, bytes([COMMAND_READY]))
    wait_sts(bus, COMMAND_READY)
    sent = 0
    while sent < len(command):
        burst = sts(bus)[1]
        assert burst > 0
        piece = command[sent : sent + min(burst, 64)]
        write(bus, FIFO, piece)
        sent += len(piece)
        expect = sts(bus)[0] & EXPECT
        assert expect if sent < len(command) else not expect
    write(bus, STS, bytes([GO]))


def receive(bus: RawBus, timeout: float = 5.0) -> bytes:
    wait_sts(bus, STS_VALID | DATA_AVAIL, timeout)
    response = read(bus, FIFO, 6)
    size = struct.unpack_from(">I", response, 2)[0]
    while len(response) < size:
        burst = sts(bus)[1]
        response += read(bus, FIFO, min(burst, 64, size - len(response)))
    assert sts(bus)[0] & DATA_AVAIL == 0
    write(bus, STS, bytes([COMMAND_READY]))
    return response


def exchange(bus: RawBus, command: bytes) -> bytes:
    send(bus, command)
    return receive(bus)


def response_code(response: bytes) -> int:
    return struct.unpack_from(">I", response, 6)[0]


def test_get_random_goes_through_the_fifo_to_swtpm(spi_tpm: SpiTpm, spi_bus: RawBus) -> None:
    assert int.from_bytes(read(spi_bus, DID_VID_REG, 4), "little") == DID_VID
    claim_locality(spi_bus)
    response = exchange(spi_bus, GET_RANDOM_8)
    assert response_code(response) == 0 and len(response) == 20
    assert spi_tpm.device.commands == [GET_RANDOM_8]


def test_header_and_data_in_one_transfer_without_wait_states(spi_bus: RawBus) -> None:
    status, rx = spi_bus.spi((header(True, DID_VID_REG, 4) + bytes(4), False))
    assert status == 0
    assert rx[3] & 1 and int.from_bytes(rx[4:], "little") == DID_VID


def test_wait_states_before_the_data(spi_tpm: SpiTpm, spi_bus: RawBus) -> None:
    spi_tpm.faults.wait_states(3)
    data, waits = frame(spi_bus, header(True, DID_VID_REG, 4), bytes(4))
    assert waits == [0x00, 0x00, 0x01]
    assert int.from_bytes(data, "little") == DID_VID
    # A host that ignores wait states reads the wait bytes as data.
    status, rx = spi_bus.spi((header(True, DID_VID_REG, 4) + bytes(4), False))
    assert status == 0 and rx[3] & 1 == 0 and int.from_bytes(rx[4:], "little") != DID_VID


def test_chip_select_follows_spidev(spi_tpm: SpiTpm, spi_bus: RawBus) -> None:
    # cs_change on a transfer that is not the last toggles CS: the data starts a new frame.
    status, rx = spi_bus.spi((header(True, DID_VID_REG, 4), True), (bytes(4), False))
    assert status == 0 and int.from_bytes(rx[4:], "little") != DID_VID
    assert not spi_tpm.selected
    # cs_change on the last transfer keeps CS into the next message.
    assert spi_bus.spi((header(True, DID_VID_REG, 4), True))[0] == 0
    assert spi_tpm.selected
    status, rx = spi_bus.spi((bytes(2), False), (bytes(2), False))  # CS held between transfers
    assert status == 0 and int.from_bytes(rx, "little") == DID_VID
    assert not spi_tpm.selected


def test_frame_cut_short_is_dropped(spi_bus: RawBus) -> None:
    claim_locality(spi_bus)
    assert spi_bus.spi((header(False, STS, 1), False))[0] == 0  # CS released before the data
    assert sts(spi_bus)[0] & COMMAND_READY == 0


def test_foreign_address_floats(spi_bus: RawBus) -> None:
    status, rx = spi_bus.spi((b"\x83\xd5\x0f\x00" + bytes(4), False))
    assert status == 0 and rx[3:] == b"\xff" * 5
    status, rx = spi_bus.spi((header(True, DID_VID_REG, 4, locality=5) + bytes(4), False))
    assert rx[4:] == b"\xff" * 4


def test_localities_in_the_address(spi_bus: RawBus) -> None:
    write(spi_bus, ACCESS, bytes([REQUEST_USE]), locality=2)
    assert read(spi_bus, ACCESS, 1, locality=2)[0] & ACTIVE
    assert read(spi_bus, ACCESS, 1, locality=0)[0] & ACTIVE == 0
    assert read(spi_bus, STS, 4, locality=0) == b"\xff" * 4  # not the active locality
    write(spi_bus, ACCESS, bytes([REQUEST_USE]), locality=0)
    assert read(spi_bus, ACCESS, 1, locality=2)[0] & 0x04  # pendingRequest
    write(spi_bus, ACCESS, bytes([ACTIVE]), locality=2)  # relinquish: 0 gets it
    assert read(spi_bus, ACCESS, 1, locality=0)[0] & ACTIVE


def test_bus_error_fails_the_message_and_releases_chip_select(
    spi_tpm: SpiTpm, spi_bus: RawBus
) -> None:
    assert spi_bus.spi((header(True, DID_VID_REG, 4), True))[0] == 0
    spi_tpm.faults.bus_error(1)
    assert spi_bus.spi((bytes(4), False)) == (errno.EIO, b"")
    assert not spi_tpm.selected
    assert int.from_bytes(read(spi_bus, DID_VID_REG, 4), "little") == DID_VID


def test_fifo_write_beyond_burst_count_waits_forever(spi_tpm: SpiTpm, spi_bus: RawBus) -> None:
    claim_locality(spi_bus)
    write(spi_bus, STS, bytes([COMMAND_READY]))
    size = spi_tpm.device.burst + 1
    status, rx = spi_bus.spi((header(False, FIFO, size), True))
    assert status == 0 and rx[3] & 1 == 0
    status, rx = spi_bus.spi((bytes(MAX_POLLS), False))
    assert status == 0 and rx == bytes(MAX_POLLS)


def test_stuck_burst_count(spi_tpm: SpiTpm, spi_bus: RawBus) -> None:
    claim_locality(spi_bus)
    write(spi_bus, STS, bytes([COMMAND_READY]))
    spi_tpm.faults.stuck_burst(0.2)
    assert sts(spi_bus)[1] == 0
    status, rx = spi_bus.spi((header(False, FIFO, 1) + bytes(4), False))
    assert status == 0 and rx[3:] == bytes(5)  # even one byte waits while burstCount is 0
    time.sleep(0.2)
    assert sts(spi_bus)[1] == spi_tpm.device.burst
    assert response_code(exchange(spi_bus, GET_RANDOM_8)) == 0


def test_slow_tpm_sets_data_available_late(spi_tpm: SpiTpm, spi_bus: RawBus) -> None:
    claim_locality(spi_bus)
    spi_tpm.faults.slow(0.3)
    started = time.monotonic()
    send(spi_bus, GET_RANDOM_8)
    assert sts(spi_bus)[0] & (STS_VALID | DATA_AVAIL) == STS_VALID
    assert response_code(receive(spi_bus)) == 0
    assert time.monotonic() - started >= 0.3


def test_reset_mid_command_loses_the_command_and_needs_startup(spi_tpm_fresh: SpiTpm) -> None:
    bus = RawBus(spi_tpm_fresh.path)
    try:
        claim_locality(bus)
        spi_tpm_fresh.faults.reset_mid_command()
        send(bus, GET_RANDOM_8)
        assert read(bus, ACCESS, 1)[0] & ACTIVE == 0
        assert read(bus, STS, 4) == b"\xff" * 4
        assert spi_tpm_fresh.device.commands == []
        claim_locality(bus)
        assert response_code(exchange(bus, GET_RANDOM_8)) == TPM_RC_INITIALIZE
        assert response_code(exchange(bus, STARTUP_CLEAR)) == 0
        assert response_code(exchange(bus, GET_RANDOM_8)) == 0
    finally:
        bus.close()
