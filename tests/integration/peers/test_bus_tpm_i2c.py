"""The I²C TPM simulator driven with raw I2C_RDWR transactions on its bus socket: a whole TPM
command the way the PTP's I²C interface says, the register map, and every injectable fault."""

from __future__ import annotations

import errno
import struct
import time

import pytest

from tests.peers.i2c_tpm import I2cTpm
from tests.peers.raw_bus import GET_RANDOM_8, STARTUP_CLEAR, TPM_RC_INITIALIZE, RawBus
from tests.peers.tis_device import crc16_kermit

ADDR = 0x2E
LOC_SEL, ACCESS, STS, FIFO, CAPABILITY = 0x00, 0x04, 0x18, 0x24, 0x30
CSUM_ENABLE, CSUM, DID_VID, RID = 0x40, 0x44, 0x48, 0x4C
VALID, ACTIVE, REQUEST_USE = 0x80, 0x20, 0x02
STS_VALID, COMMAND_READY, GO, DATA_AVAIL, EXPECT = 0x80, 0x40, 0x20, 0x10, 0x08


def read(bus: RawBus, register: int, length: int) -> bytes:
    """Pointer write, STOP, read (two transactions, as Linux does)."""
    assert bus.i2c((ADDR, bytes([register]))) == (0, b"")
    status, data = bus.i2c((ADDR, length))
    assert status == 0, f"read of 0x{register:02x}: errno {status}"
    return data


def write(bus: RawBus, register: int, data: bytes) -> None:
    status, _ = bus.i2c((ADDR, bytes([register]) + data))
    assert status == 0, f"write of 0x{register:02x}: errno {status}"


def sts(bus: RawBus) -> tuple[int, int]:
    """(status bits, burstCount)."""
    value = int.from_bytes(read(bus, STS, 4), "little")
    return value & 0xFF, (value >> 8) & 0xFFFF


def wait_sts(bus: RawBus, bits: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while sts(bus)[0] & bits != bits:
        assert time.monotonic() < deadline, f"STS never showed 0x{bits:02x}"
        time.sleep(0.002)


def wire_crc(data: bytes) -> bytes:
    return crc16_kermit(data).to_bytes(2, "big")


def claim_locality(bus: RawBus) -> None:
    write(bus, LOC_SEL, b"\x00")
    write(bus, CSUM_ENABLE, b"\x01")
    write(bus, ACCESS, bytes([REQUEST_USE]))
    assert read(bus, ACCESS, 1)[0] & (VALID | ACTIVE) == VALID | ACTIVE


def send(bus: RawBus, command: bytes) -> None:
    """commandReady, the command in burstCount pieces (the last byte alone) with Expect checked
    after each, the CRC, tpmGo."""
    write(bus, STS, bytes([COMMAND_READY]))
    wait_sts(bus, COMMAND_READY)
    sent = 0
    while sent < len(command) - 1:
        burst = sts(bus)[1]
        assert burst > 0
        piece = command[sent : min(sent + burst, len(command) - 1)]
        write(bus, FIFO, piece)
        sent += len(piece)
        assert sts(bus)[0] & (STS_VALID | EXPECT) == STS_VALID | EXPECT
    write(bus, FIFO, command[-1:])
    assert sts(bus)[0] & (STS_VALID | EXPECT) == STS_VALID
    assert read(bus, CSUM, 2) == wire_crc(command)
    write(bus, STS, bytes([GO]))


def receive(bus: RawBus, timeout: float = 5.0) -> bytes:
    wait_sts(bus, STS_VALID | DATA_AVAIL, timeout)
    response = read(bus, FIFO, 6)
    size = struct.unpack_from(">I", response, 2)[0]
    while len(response) < size:
        burst = sts(bus)[1]
        response += read(bus, FIFO, min(burst, size - len(response)))
    assert sts(bus)[0] & (STS_VALID | DATA_AVAIL) == STS_VALID
    assert read(bus, CSUM, 2) == wire_crc(response)
    write(bus, STS, bytes([COMMAND_READY]))
    return response


def exchange(bus: RawBus, command: bytes) -> bytes:
    send(bus, command)
    return receive(bus)


def response_code(response: bytes) -> int:
    return struct.unpack_from(">I", response, 6)[0]


def test_get_random_goes_through_the_fifo_to_swtpm(i2c_tpm: I2cTpm, i2c_bus: RawBus) -> None:
    assert int.from_bytes(read(i2c_bus, DID_VID, 4), "little") not in (0, 0xFFFFFFFF)
    assert read(i2c_bus, RID, 1) != b"\xff"
    claim_locality(i2c_bus)
    response = exchange(i2c_bus, GET_RANDOM_8)
    assert response_code(response) == 0
    assert len(response) == 10 + 2 + 8 and response[10:12] == b"\x00\x08"
    assert i2c_tpm.device.commands == [GET_RANDOM_8]
    assert sts(i2c_bus)[0] & COMMAND_READY  # back to Ready; a second command works too
    assert response_code(exchange(i2c_bus, GET_RANDOM_8)) == 0


def test_register_map_and_read_zero_bits(i2c_tpm: I2cTpm, i2c_bus: RawBus) -> None:
    capability = int.from_bytes(read(i2c_bus, CAPABILITY, 4), "little")
    assert capability & 0xF == 2 and capability >> 7 & 3 == 1  # FIFO interface, TPM 2.0
    assert capability & 0x80000000 == 0 and capability & 0x1FE00 == 0  # no guard time by default
    assert read(i2c_bus, ACCESS, 1)[0] & 0x48 == 0
    claim_locality(i2c_bus)
    value = int.from_bytes(read(i2c_bus, STS, 4), "little")
    assert value & 0x23 == 0 and value >> 26 == 0  # tpmGo, responseRetry, reserved read 0
    assert read(i2c_bus, STS + 1, 2) == read(i2c_bus, STS, 4)[1:3]  # burstCount alone
    assert read(i2c_bus, LOC_SEL, 1) == b"\x00" and read(i2c_bus, CSUM_ENABLE, 1) == b"\x01"


def test_guard_time_is_advertised_and_enforced(swtpm, bus_dir) -> None:
    tpm = I2cTpm(bus_dir / "g.sock", swtpm.host, swtpm.port, swtpm.ctrl_port, guard_time_us=200)
    tpm.start()
    bus = RawBus(tpm.path)
    try:
        capability = int.from_bytes(read(bus, CAPABILITY, 4), "little")
        assert capability >> 9 & 0xFF == 200
        assert capability & (0xF << 17) == 0xF << 17 and capability & 1 << 30  # WW WR RW RR, SR
        tpm.faults.guard_time(0.2)
        time.sleep(0.2)
        assert bus.i2c((ADDR, b"\x04")) == (0, b"")
        assert bus.i2c((ADDR, 1)) == (errno.ENXIO, b"")  # too soon
        time.sleep(0.2)
        assert bus.i2c((ADDR, 1))[0] == 0
    finally:
        bus.close()
        tpm.stop()


def test_other_addresses_are_not_acknowledged(i2c_bus: RawBus) -> None:
    assert i2c_bus.i2c((0x2F, b"\x04")) == (errno.ENXIO, b"")
    assert i2c_bus.i2c((ADDR, b"\x48"), (0x50, 1)) == (errno.ENXIO, b"")
    assert i2c_bus.i2c((ADDR, b"")) == (0, b"")  # a quick write to the right address


def test_register_pointer_stays_for_repeated_start_and_next_transaction(i2c_bus: RawBus) -> None:
    status, did_vid = i2c_bus.i2c((ADDR, bytes([DID_VID])), (ADDR, 4))
    assert status == 0
    assert i2c_bus.i2c((ADDR, 4)) == (0, did_vid)
    assert i2c_bus.i2c((ADDR, 4), (ADDR, 4)) == (0, did_vid * 2)


def test_unknown_register_is_nacked(i2c_bus: RawBus) -> None:
    assert i2c_bus.i2c((ADDR, b"\x5c")) == (errno.EREMOTEIO, b"")
    assert i2c_bus.i2c((ADDR, b"\x38\x2f\x00"))[0] == errno.EREMOTEIO  # no address change


def test_fifo_write_beyond_burst_count_is_nacked_after_the_burst(
    i2c_tpm: I2cTpm, i2c_bus: RawBus
) -> None:
    claim_locality(i2c_bus)
    write(i2c_bus, STS, bytes([COMMAND_READY]))
    command = GET_RANDOM_8 + bytes(40)
    command = command[:2] + struct.pack(">I", len(command)) + command[6:]
    assert i2c_bus.i2c((ADDR, bytes([FIFO]) + command))[0] == errno.EREMOTEIO
    assert read(i2c_bus, CSUM, 2) == wire_crc(command[: i2c_tpm.device.burst])


def test_fifo_write_without_command_ready_is_ignored(i2c_tpm: I2cTpm, i2c_bus: RawBus) -> None:
    claim_locality(i2c_bus)
    write(i2c_bus, FIFO, GET_RANDOM_8)
    write(i2c_bus, STS, bytes([GO]))
    assert i2c_tpm.device.commands == []
    assert sts(i2c_bus)[0] & (EXPECT | DATA_AVAIL | COMMAND_READY) == 0
    assert read(i2c_bus, FIFO, 4) == b"\xff" * 4  # nothing to read without dataAvail
    assert response_code(exchange(i2c_bus, GET_RANDOM_8)) == 0


def test_bytes_past_the_command_size_are_dropped(i2c_tpm: I2cTpm, i2c_bus: RawBus) -> None:
    claim_locality(i2c_bus)
    write(i2c_bus, STS, bytes([COMMAND_READY]))
    write(i2c_bus, FIFO, GET_RANDOM_8 + b"\xaa\xbb")
    assert sts(i2c_bus)[0] & EXPECT == 0
    write(i2c_bus, STS, bytes([GO]))
    assert response_code(receive(i2c_bus)) == 0
    assert i2c_tpm.device.commands == [GET_RANDOM_8]


@pytest.mark.parametrize(
    ("inject", "expected"),
    [
        (lambda f: f.nak(2), errno.ENXIO),
        (lambda f: f.nak(2, kind="data"), errno.EREMOTEIO),
        (lambda f: f.bus_error(2), errno.EIO),
    ],
    ids=["address-nak", "data-nak", "bus-error"],
)
def test_failed_transactions_have_no_effect(
    i2c_tpm: I2cTpm, i2c_bus: RawBus, inject, expected
) -> None:
    claim_locality(i2c_bus)
    inject(i2c_tpm.faults)
    assert i2c_bus.i2c((ADDR, bytes([STS, COMMAND_READY]))) == (expected, b"")
    assert i2c_bus.i2c((ADDR, bytes([STS])), (ADDR, 1)) == (expected, b"")
    assert sts(i2c_bus)[0] & COMMAND_READY == 0  # the failed write did not happen
    assert response_code(exchange(i2c_bus, GET_RANDOM_8)) == 0


def test_bad_checksum_for_the_next_reads_only(i2c_tpm: I2cTpm, i2c_bus: RawBus) -> None:
    claim_locality(i2c_bus)
    write(i2c_bus, STS, bytes([COMMAND_READY]))
    write(i2c_bus, FIFO, GET_RANDOM_8)
    i2c_tpm.faults.bad_checksum(2)
    assert read(i2c_bus, CSUM, 2) != wire_crc(GET_RANDOM_8)
    assert read(i2c_bus, CSUM, 2) != wire_crc(GET_RANDOM_8)
    assert read(i2c_bus, CSUM, 2) == wire_crc(GET_RANDOM_8)


def test_checksum_is_zero_when_disabled_and_high_byte_first(i2c_bus: RawBus) -> None:
    write(i2c_bus, ACCESS, bytes([REQUEST_USE]))
    write(i2c_bus, STS, bytes([COMMAND_READY]))
    write(i2c_bus, FIFO, b"123456789")
    assert read(i2c_bus, CSUM, 2) == b"\x00\x00"
    write(i2c_bus, CSUM_ENABLE, b"\x01")
    assert read(i2c_bus, CSUM, 2) == b"\x21\x89"  # CRC-16/KERMIT check value 0x2189


def test_stuck_burst_count_reads_zero_then_recovers(i2c_tpm: I2cTpm, i2c_bus: RawBus) -> None:
    claim_locality(i2c_bus)
    write(i2c_bus, STS, bytes([COMMAND_READY]))
    i2c_tpm.faults.stuck_burst(0.3)
    assert sts(i2c_bus)[1] == 0
    assert i2c_bus.i2c((ADDR, bytes([FIFO]) + GET_RANDOM_8[:4]))[0] == errno.EREMOTEIO
    time.sleep(0.3)
    assert sts(i2c_bus)[1] == i2c_tpm.device.burst
    i2c_tpm.faults.stuck_burst(None)
    time.sleep(0.05)
    assert sts(i2c_bus)[1] == 0


def test_slow_tpm_sets_data_available_late(i2c_tpm: I2cTpm, i2c_bus: RawBus) -> None:
    claim_locality(i2c_bus)
    i2c_tpm.faults.slow(0.4)
    started = time.monotonic()
    send(i2c_bus, GET_RANDOM_8)
    assert sts(i2c_bus)[0] & DATA_AVAIL == 0
    assert response_code(receive(i2c_bus)) == 0
    assert time.monotonic() - started >= 0.4


def test_reset_mid_command_loses_the_command_and_needs_startup(i2c_tpm_fresh: I2cTpm) -> None:
    bus = RawBus(i2c_tpm_fresh.path)
    try:
        claim_locality(bus)
        i2c_tpm_fresh.faults.reset_mid_command()
        send(bus, GET_RANDOM_8)
        assert read(bus, ACCESS, 1)[0] & ACTIVE == 0  # the interface came back from reset
        assert read(bus, CSUM_ENABLE, 1) == b"\x00"
        assert i2c_tpm_fresh.device.commands == []  # the command never reached the TPM
        claim_locality(bus)
        assert response_code(exchange(bus, GET_RANDOM_8)) == TPM_RC_INITIALIZE
        assert response_code(exchange(bus, STARTUP_CLEAR)) == 0
        assert response_code(exchange(bus, GET_RANDOM_8)) == 0
    finally:
        bus.close()


def test_reconnect_stop_and_start_again(i2c_tpm: I2cTpm) -> None:
    for _ in range(2):
        bus = RawBus(i2c_tpm.path)
        assert read(bus, RID, 1) != b""
        bus.close()
    started = time.monotonic()
    bus = RawBus(i2c_tpm.path)  # a connected client does not hold stop up
    i2c_tpm.stop()
    bus.close()
    assert time.monotonic() - started < 2.0
    assert not i2c_tpm.path.exists()
    i2c_tpm.start()  # and it serves again
    bus = RawBus(i2c_tpm.path)
    claim_locality(bus)
    assert response_code(exchange(bus, GET_RANDOM_8)) == 0
    bus.close()
