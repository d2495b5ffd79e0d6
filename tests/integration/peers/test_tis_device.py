"""The TIS FIFO state machine of the bus simulators, at register level without a bus, on swtpm:
the states a command goes through, what the spec says a device ignores, the faults' bookkeeping."""

from __future__ import annotations

import errno
import socket
import struct
import time
from collections.abc import Iterator

import pytest

from tests.peers import tis_device as tis
from tests.peers.raw_bus import GET_RANDOM_8
from tests.peers.sim import Swtpm
from tests.peers.swtpm_raw import SwtpmRaw


@pytest.fixture
def device(swtpm: Swtpm) -> Iterator[tis.TisDevice]:
    tpm = tis.TisDevice(SwtpmRaw(swtpm.host, swtpm.port, swtpm.ctrl_port), tis.Faults(), burst=8)
    yield tpm
    tpm.close()


def sts(device: tis.TisDevice, locality: int = 0) -> int:
    return int.from_bytes(device.read(locality, tis.REG_STS, 4), "little")


def ready(device: tis.TisDevice) -> None:
    device.write(0, tis.REG_ACCESS, bytes([tis.ACCESS_REQUEST_USE]))
    device.write(0, tis.REG_STS, bytes([tis.STS_COMMAND_READY]))
    assert sts(device) & tis.STS_COMMAND_READY


def wait_data(device: tis.TisDevice, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not sts(device) & tis.STS_DATA_AVAIL:
        assert time.monotonic() < deadline, "dataAvail never came"
        time.sleep(0.002)


def read_response(device: tis.TisDevice) -> bytes:
    head = device.read(0, tis.REG_DATA_FIFO, 6)
    size = struct.unpack_from(">I", head, 2)[0]
    return head + device.read(0, tis.REG_DATA_FIFO, size - 6)


def test_crc16_kermit_check_value() -> None:
    assert tis.crc16_kermit(b"123456789") == 0x2189
    assert tis.crc16_kermit(b"") == 0


def test_command_states_and_status_bits(device: tis.TisDevice) -> None:
    assert sts(device) == 0xFFFFFFFF  # no active locality yet
    ready(device)
    assert sts(device) >> 8 & 0xFFFF == 8
    assert sts(device) & 0x0C000000 == tis.STS_FAMILY_TPM2
    device.write(0, tis.REG_DATA_FIFO, GET_RANDOM_8[:5])
    assert sts(device) & (tis.STS_VALID | tis.STS_EXPECT) == tis.STS_VALID | tis.STS_EXPECT
    device.write(0, tis.REG_STS, bytes([tis.STS_GO]))  # before the whole command: ignored
    assert device.commands == []
    device.write(0, tis.REG_DATA_FIFO, GET_RANDOM_8[5:])
    assert sts(device) & tis.STS_EXPECT == 0
    device.checksum_enabled = True
    assert device.checksum() == tis.crc16_kermit(GET_RANDOM_8)
    device.write(0, tis.REG_STS, bytes([tis.STS_GO]))
    wait_data(device)
    assert sts(device) >> 8 & 0xFFFF == 8  # min(burst, bytes left)
    response = read_response(device)
    assert len(response) == 20 and response[6:10] == bytes(4)
    assert sts(device) & (tis.STS_VALID | tis.STS_DATA_AVAIL) == tis.STS_VALID
    assert device.checksum() == tis.crc16_kermit(response)
    assert device.read(0, tis.REG_DATA_FIFO, 2) == b"\xff\xff"  # past the response
    device.write(0, tis.REG_STS, bytes([tis.STS_RESPONSE_RETRY]))
    assert read_response(device) == response
    device.write(0, tis.REG_STS, bytes([tis.STS_COMMAND_READY]))
    assert sts(device) & (tis.STS_COMMAND_READY | tis.STS_DATA_AVAIL) == tis.STS_COMMAND_READY


def test_several_command_bits_at_once_are_ignored(device: tis.TisDevice) -> None:
    device.write(0, tis.REG_ACCESS, bytes([tis.ACCESS_REQUEST_USE | tis.ACCESS_ACTIVE]))
    assert device.read(0, tis.REG_ACCESS, 1)[0] & tis.ACCESS_ACTIVE == 0
    device.write(0, tis.REG_ACCESS, bytes([tis.ACCESS_REQUEST_USE]))
    device.write(0, tis.REG_STS, bytes([tis.STS_COMMAND_READY | tis.STS_GO]))
    assert sts(device) & tis.STS_COMMAND_READY == 0


def test_other_localities_cannot_drive_the_fifo(device: tis.TisDevice) -> None:
    ready(device)
    device.write(1, tis.REG_STS, bytes([tis.STS_COMMAND_READY]))
    device.write(1, tis.REG_DATA_FIFO, GET_RANDOM_8)
    assert sts(device) & tis.STS_COMMAND_READY  # locality 0 is still Ready, nothing received
    assert device.read(1, tis.REG_DATA_FIFO, 1) == b"\xff"
    assert not device.accepting(1) and device.accepting(0)


def test_releasing_the_locality_abandons_the_command(device: tis.TisDevice) -> None:
    ready(device)
    device.write(0, tis.REG_DATA_FIFO, GET_RANDOM_8[:4])
    device.write(0, tis.REG_ACCESS, bytes([tis.ACCESS_ACTIVE]))
    device.write(0, tis.REG_ACCESS, bytes([tis.ACCESS_REQUEST_USE]))
    assert sts(device) & (tis.STS_EXPECT | tis.STS_COMMAND_READY) == 0  # Idle again


def test_command_ready_cancels_a_command_in_execution(device: tis.TisDevice) -> None:
    device.faults.slow(0.2)
    ready(device)
    device.write(0, tis.REG_DATA_FIFO, GET_RANDOM_8)
    device.write(0, tis.REG_STS, bytes([tis.STS_GO]))
    device.write(0, tis.REG_STS, bytes([tis.STS_COMMAND_READY]))
    time.sleep(0.25)
    assert sts(device) & (tis.STS_DATA_AVAIL | tis.STS_COMMAND_READY) == tis.STS_COMMAND_READY
    device.faults.slow(0)
    device.write(0, tis.REG_DATA_FIFO, GET_RANDOM_8)
    device.write(0, tis.REG_STS, bytes([tis.STS_GO]))
    wait_data(device)
    assert read_response(device)[6:10] == bytes(4)


def test_a_dead_backend_is_a_hung_tpm(device: tis.TisDevice) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    device.backend = SwtpmRaw("127.0.0.1", port)  # nothing listens there
    ready(device)
    device.write(0, tis.REG_DATA_FIFO, GET_RANDOM_8)
    device.write(0, tis.REG_STS, bytes([tis.STS_GO]))
    time.sleep(0.1)
    assert sts(device) & (tis.STS_DATA_AVAIL | tis.STS_COMMAND_READY) == 0
    device.write(0, tis.REG_STS, bytes([tis.STS_COMMAND_READY]))  # the host gives up
    assert sts(device) & tis.STS_COMMAND_READY


def test_faults_are_consumed_in_order() -> None:
    faults = tis.Faults()
    faults.nak(1)
    faults.nak(1, kind="data")
    faults.bus_error(1)
    taken = [faults.take_failure() for _ in range(4)]
    assert taken == [errno.ENXIO, errno.EREMOTEIO, errno.EIO, 0]
    faults.bad_checksum(1)
    assert [faults.take_bad_checksum() for _ in range(2)] == [True, False]
    faults.reset_mid_command()
    assert [faults.take_reset() for _ in range(2)] == [True, False]
    faults.stuck_burst(None)
    faults.wait_states(2)
    faults.clear()
    assert not faults.burst_stuck() and faults.wait_state_count == 0
