"""TIS over I²C at the message level: a fake bus sees every I²C transaction the port makes.

The fake bus is an I²C device at 0x2e with a register pointer (a write message sets it, a read
reads from it) in front of the scripted TIS register file of the TIS tests, plus the I²C-only
registers (LOC_SEL, I2C_INTERFACE_CAPABILITY, DATA_CSUM_ENABLE, DATA_CSUM). It proves the
transaction shapes (a register read is two one-message transactions), the guard times, the NAK
and bus-error retries, the read-zero checks, the CRC and its byte order, opening from a URL
(kernel adapter, bus socket, anything else), and a whole command through `TisTransport`.
"""

from __future__ import annotations

import errno
import itertools
import os
import socket
import struct
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from firmware._ffi import load_linux_bus
from firmware.transports.address import parse_device_url
from firmware.transports.errors import (
    BusFault,
    DeviceUrlError,
    TransportProtocolError,
    TransportTimeout,
)
from firmware.transports.i2c_bus import I2cDevBus, I2cMessage, SocketI2cBus
from firmware.transports.tis import STS_RESPONSE_RETRY, Register, TisTransport
from firmware.transports.tis_i2c import (
    GUARD_DEFAULT,
    REGISTERS,
    RETRIES,
    GuardTimes,
    TisI2cPort,
    crc16_kermit,
    open_tis_i2c,
)
from tests.unit.transports.tis_fakes import FakeClock, FakeTis, echo_response, tpm_command

ADDR = 0x2E
FAR = 1e9
BY_ADDRESS = {address: register for register, address in REGISTERS.items()}
# guard time 100 µs, needed only read→read and write→write
CAPABILITY_RR_WW = 0x2 | 1 << 7 | 100 << 9 | 1 << 20 | 1 << 17


@dataclass
class FakeI2cTpm:
    """An I²C TPM at 0x2e as an `I2cBus`: every transaction logged with its time."""

    clock: FakeClock = field(default_factory=FakeClock)
    tis: FakeTis = field(default_factory=FakeTis)
    capability: int = CAPABILITY_RR_WW
    has_checksum: bool = True
    where: str = "the fake I²C bus"
    fail: list[int] = field(default_factory=list)  # errnos for the next transactions
    corrupt_sts: int = 0  # STS reads that come back with a must-be-zero bit set
    log: list[tuple[float, tuple[I2cMessage, ...]]] = field(default_factory=list)
    loc_sel: int = -1
    csum_enable: int = 0
    pointer: int = 0
    closed: bool = False

    def __post_init__(self) -> None:
        self.tis.clock = self.clock

    def transfer(self, messages: Sequence[I2cMessage], deadline: float) -> bytes:
        self.log.append((self.clock.now, tuple(messages)))
        self.clock.now += 0.00005  # a transaction takes 50 µs
        if self.fail:
            code = self.fail.pop(0)
            raise OSError(code, os.strerror(code))
        out = b""
        for message in messages:
            assert message.addr == ADDR
            if message.read:
                out += self._read(message.size)
            else:
                self.pointer = message.data[0]
                if len(message.data) > 1:
                    self._write(message.data[1:])
        return out

    def close(self) -> None:
        self.closed = True

    def _read(self, size: int) -> bytes:
        reg = self.pointer
        if reg == 0x30:
            return self.capability.to_bytes(4, "little")[:size]
        if reg == 0x00:
            return bytes([self.loc_sel])
        if reg == 0x40:
            return bytes([self.csum_enable])
        if reg == 0x44:
            data = self.tis.response if self.tis.response else bytes(self.tis.received)
            return crc16_kermit(data).to_bytes(2, "big")
        value = self.tis.read(BY_ADDRESS[reg], size, FAR)
        if reg == 0x18 and self.corrupt_sts:
            self.corrupt_sts -= 1
            value = bytes([value[0] | 0x01]) + value[1:]
        return value

    def _write(self, data: bytes) -> None:
        reg = self.pointer
        if reg == 0x00:
            self.loc_sel = data[0]
        elif reg == 0x40:
            self.csum_enable = data[0] & 1 if self.has_checksum else 0
        else:
            self.tis.write(BY_ADDRESS[reg], data, FAR)

    def transactions(self) -> list[tuple[I2cMessage, ...]]:
        return [messages for _, messages in self.log]


def port_on(bus: FakeI2cTpm, *, checksum: bool = True, locality: int = 0) -> TisI2cPort:
    port = TisI2cPort(bus, ADDR, where="the TPM", sleep=bus.clock.sleep, clock=bus.clock)
    port.open(locality=locality, checksum=checksum, deadline=FAR)
    return port


def w(*data: int) -> tuple[I2cMessage]:
    return (I2cMessage.write_of(ADDR, bytes(data)),)


def r(size: int) -> tuple[I2cMessage]:
    return (I2cMessage.read_of(ADDR, size),)


def test_crc16_kermit() -> None:
    assert crc16_kermit(b"123456789") == 0x2189
    assert crc16_kermit(b"") == 0
    assert crc16_kermit(b"\x80\x01\x00\x00\x00\x0c\x00\x00\x01\x7b\x00\x08") != 0


def test_open_reads_the_guard_time_selects_the_locality_and_enables_the_checksum() -> None:
    bus = FakeI2cTpm()
    port = port_on(bus, locality=2)
    assert bus.transactions() == [w(0x30), r(4), w(0x00, 2), w(0x40, 1), w(0x40), r(1)]
    assert bus.loc_sel == 2 and bus.csum_enable == 1 and port.checksum
    assert port.guard == GuardTimes(100e-6, True, False, False, True)
    # before the capability was known, 250 µs between every transaction
    times = [at for at, _ in bus.log]
    assert times[1] - times[0] >= GUARD_DEFAULT


def test_checksum_off_disables_it_and_verify_reads_nothing() -> None:
    bus = FakeI2cTpm()
    port = port_on(bus, checksum=False)
    assert w(0x40, 0) in bus.transactions() and not port.checksum
    before = len(bus.log)
    assert port.verify(b"anything", FAR)
    assert len(bus.log) == before


def test_a_tpm_without_the_checksum_is_not_asked_for_it() -> None:
    bus = FakeI2cTpm(has_checksum=False)
    port = port_on(bus)
    assert not port.checksum


def test_a_register_read_is_two_transactions_of_one_message() -> None:
    bus = FakeI2cTpm()
    port = port_on(bus)
    bus.log.clear()
    assert port.read(Register.DID_VID, 4, FAR) == bus.tis.did_vid
    assert bus.transactions() == [w(0x48), r(4)]
    bus.log.clear()
    port.write(Register.STS, b"\x40", FAR)
    assert bus.transactions() == [w(0x18, 0x40)]


def test_guard_times_follow_the_capability_flags() -> None:
    bus = FakeI2cTpm()
    port = port_on(bus)
    bus.clock.sleeps.clear()
    bus.log.clear()
    port.read(Register.RID, 1, FAR)  # write→read: no guard (WR clear)
    port.read(Register.RID, 1, FAR)  # read→write: no guard (RW clear), write→read: none
    assert bus.clock.sleeps == []
    port.write(Register.ACCESS, b"\x02", FAR)
    port.write(Register.ACCESS, b"\x20", FAR)  # write→write: 100 µs
    assert bus.clock.sleeps == [pytest.approx(100e-6)]  # counted from the end of the write
    times = [at for at, _ in bus.log]
    assert times[-1] - times[-2] == pytest.approx(150e-6)


def test_naks_are_retried_with_the_guard_time() -> None:
    bus = FakeI2cTpm()
    port = port_on(bus)
    bus.log.clear()
    bus.fail = [errno.ENXIO, errno.EREMOTEIO, errno.ENXIO]
    assert port.read(Register.RID, 1, FAR) == b"\x16"
    assert bus.transactions() == [w(0x4C)] * 4 + [r(1)]
    times = [at for at, _ in bus.log]
    assert all(b - a >= GUARD_DEFAULT for a, b in itertools.pairwise(times[:4]))


def test_a_tpm_that_never_acknowledges_is_a_bus_fault() -> None:
    bus = FakeI2cTpm()
    port = port_on(bus)
    bus.log.clear()
    bus.fail = [errno.ENXIO] * 1000
    with pytest.raises(BusFault, match=f"did not acknowledge {RETRIES} times"):
        port.read(Register.RID, 1, FAR)
    assert len(bus.log) == RETRIES


def test_naks_stop_at_the_deadline() -> None:
    bus = FakeI2cTpm()
    port = port_on(bus)
    bus.fail = [errno.ENXIO] * 1000
    with pytest.raises(TransportTimeout, match="deadline"):
        port.read(Register.RID, 1, bus.clock.now + 0.002)


def test_one_bus_error_is_retried_a_second_is_a_bus_fault() -> None:
    bus = FakeI2cTpm()
    port = port_on(bus)
    bus.fail = [errno.EIO]
    assert port.read(Register.RID, 1, FAR) == b"\x16"
    bus.fail = [errno.ETIMEDOUT, errno.EAGAIN]
    with pytest.raises(BusFault, match="the I²C transfer failed"):
        port.read(Register.RID, 1, FAR)


def test_another_errno_is_a_bus_fault_at_once() -> None:
    bus = FakeI2cTpm()
    port = port_on(bus)
    bus.log.clear()
    bus.fail = [errno.EINVAL]
    with pytest.raises(BusFault, match="Invalid argument"):
        port.read(Register.RID, 1, FAR)
    assert len(bus.log) == 1


def test_must_be_zero_bits_make_the_read_repeat() -> None:
    bus = FakeI2cTpm()
    port = port_on(bus)
    bus.corrupt_sts = 2
    bus.log.clear()
    assert port.read(Register.STS, 4, FAR)[0] & 0x23 == 0
    assert bus.transactions() == [w(0x18), r(4)] * 3
    bus.corrupt_sts = 10**6
    with pytest.raises(TransportProtocolError, match="bits set that must read 0"):
        port.read(Register.STS, 4, FAR)


def test_verify_compares_data_csum_high_byte_first() -> None:
    bus = FakeI2cTpm()
    port = port_on(bus)
    bus.tis.received = bytearray(b"123456789")
    bus.log.clear()
    assert port.verify(b"123456789", FAR)
    assert bus.transactions() == [w(0x44), r(2)]
    assert not port.verify(b"123456788", FAR)


def test_a_command_goes_through_over_i2c() -> None:
    bus = FakeI2cTpm(tis=FakeTis(burst=64))
    transport = TisTransport(port_on(bus), sleep=bus.clock.sleep, clock=bus.clock)
    command = tpm_command(bytes(range(100)))
    assert transport.exchange(command, FAR) == echo_response(command)
    fifo_writes = [m[0].data for m in bus.transactions() if m[0].data[:1] == b"\x24"]
    assert [len(data) - 1 for data in fifo_writes if len(data) > 1] == [31, 31, 31, 16, 1]
    assert b"".join(data[1:] for data in fifo_writes) == command
    # the command's CRC and the response's CRC were both read
    assert bus.transactions().count(w(0x44)) == 2


def test_a_bad_response_checksum_over_i2c_asks_for_it_again() -> None:
    class Garbling(FakeI2cTpm):
        garble: int = 1

        def _read(self, size: int) -> bytes:
            value = super()._read(size)
            if self.pointer == 0x44 and self.tis.response and self.garble:
                self.garble -= 1
                return bytes([value[0] ^ 0xFF, value[1]])
            return value

    bus = Garbling()
    transport = TisTransport(port_on(bus), sleep=bus.clock.sleep, clock=bus.clock)
    command = tpm_command(b"abc")
    assert transport.exchange(command, FAR) == echo_response(command)
    assert w(0x18, STS_RESPONSE_RETRY) in bus.transactions()


# -- opening from a URL


def test_a_character_device_that_is_no_i2c_adapter_is_refused() -> None:
    with pytest.raises(DeviceUrlError, match=r"/dev/null is not an I²C adapter"):
        open_tis_i2c(parse_device_url("tis-i2c:///dev/null"))


def test_a_missing_path_and_a_regular_file_are_refused(tmp_path: Path) -> None:
    with pytest.raises(BusFault, match="does not exist"):
        open_tis_i2c(parse_device_url(f"tis-i2c://{tmp_path}/nothing"))
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(DeviceUrlError, match="neither an I²C adapter nor a bus socket"):
        open_tis_i2c(parse_device_url(f"tis-i2c://{tmp_path}/file"))


@pytest.mark.parametrize("query", ["addr=0x78", "addr=2", "locality=5", "checksum=maybe"])
def test_bad_url_parameters_are_refused(query: str) -> None:
    with pytest.raises(DeviceUrlError, match=query.split("=")[0]):
        open_tis_i2c(parse_device_url(f"tis-i2c:///dev/null?{query}"))


@pytest.fixture
def socket_bus(tmp_path: Path) -> Iterator[tuple[Path, FakeI2cTpm]]:
    """The fake TPM behind a bus socket speaking the I²C wire format, served from a thread."""
    device = FakeI2cTpm(tis=FakeTis(locality_active=True))
    path = tmp_path / "i2c.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            reader = conn.makefile("rb")
            while head := reader.read(1):
                messages = []
                for _ in range(head[0]):
                    addr, flags, size = struct.unpack(">HHH", reader.read(6))
                    if flags & 1:
                        messages.append(I2cMessage.read_of(addr, size))
                    else:
                        messages.append(I2cMessage.write_of(addr, reader.read(size)))
                try:
                    data = device.transfer(messages, FAR)
                except OSError as exc:
                    conn.sendall(bytes([exc.errno or errno.EIO]))
                    continue
                conn.sendall(b"\0" + data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield path, device
    server.close()
    thread.join(timeout=5)


def test_open_over_a_bus_socket_and_exchange(socket_bus: tuple[Path, FakeI2cTpm]) -> None:
    path, device = socket_bus
    transport = open_tis_i2c(parse_device_url(f"tis-i2c://{path}?addr=0x2e&locality=1"))
    try:
        assert transport.where == f"the TIS-I²C TPM at 0x2e on {path} (locality 1)"
        assert device.loc_sel == 1 and device.csum_enable == 1
        command = tpm_command(b"over the socket")
        assert transport.exchange(command, FAR) == echo_response(command)
        device.fail = [errno.ENXIO]  # the errno byte comes back as a NAK, retried
        assert transport.exchange(command, FAR) == echo_response(command)
    finally:
        transport.close()
    transport.close()  # idempotent


def test_the_socket_wire_format_of_a_combined_transfer(socket_bus: tuple[Path, FakeI2cTpm]) -> None:
    path, device = socket_bus
    bus = SocketI2cBus(str(path), "the bus")
    try:
        messages = [I2cMessage.write_of(ADDR, b"\x48"), I2cMessage.read_of(ADDR, 4)]
        assert bus.transfer(messages, FAR) == device.tis.did_vid
        assert device.transactions()[-1] == tuple(messages)
        device.fail = [errno.EIO]
        with pytest.raises(OSError) as caught:
            bus.transfer(messages, FAR)
        assert caught.value.errno == errno.EIO
    finally:
        bus.close()


# -- the kernel adapter, its ioctl faked


class FakeLinuxBus:
    """The binding's lib with the ioctls answered by `device`, buffers filled through cffi."""

    def __init__(self, device: FakeI2cTpm, funcs: int = 1) -> None:
        self.ffi, self.lib = load_linux_bus()
        self.device = device
        self.funcs = funcs
        self.I2C_FUNC_I2C = self.lib.I2C_FUNC_I2C
        self.I2C_M_RD = self.lib.I2C_M_RD

    def ek_i2c_funcs(self, fd: int, funcs: object) -> int:
        funcs[0] = self.funcs  # type: ignore[index]
        return 0

    def ek_i2c_rdwr(self, fd: int, msgs: object, count: int) -> int:
        messages = []
        for index in range(count):
            msg = msgs[index]  # type: ignore[index]
            if msg.flags & self.I2C_M_RD:
                messages.append(I2cMessage.read_of(msg.addr, msg.len))
            else:
                data = bytes(self.ffi.buffer(msg.buf, msg.len))
                messages.append(I2cMessage.write_of(msg.addr, data))
        try:
            data = self.device.transfer(messages, FAR)
        except OSError as exc:
            return -(exc.errno or errno.EIO)
        for index in range(count):
            msg = msgs[index]  # type: ignore[index]
            if msg.flags & self.I2C_M_RD:
                self.ffi.buffer(msg.buf, msg.len)[:] = data[: msg.len]
                data = data[msg.len :]
        return 0


def test_the_kernel_adapter_fills_i2c_msgs_and_reads_back() -> None:
    device = FakeI2cTpm()
    fake = FakeLinuxBus(device)
    bus = I2cDevBus("/dev/null", "the adapter", binding=(fake.ffi, fake))  # type: ignore[arg-type]
    try:
        messages = [I2cMessage.write_of(ADDR, b"\x48"), I2cMessage.read_of(ADDR, 4)]
        assert bus.transfer(messages, FAR) == device.tis.did_vid
        assert device.transactions() == [tuple(messages)]
        device.fail = [errno.EREMOTEIO]
        with pytest.raises(OSError) as caught:
            bus.transfer(messages, FAR)
        assert caught.value.errno == errno.EREMOTEIO
    finally:
        bus.close()
    bus.close()


def test_an_adapter_without_plain_i2c_is_refused() -> None:
    fake = FakeLinuxBus(FakeI2cTpm(), funcs=0x8 << 24)  # SMBus only
    with pytest.raises(DeviceUrlError, match="cannot do plain I²C transfers"):
        I2cDevBus("/dev/null", "the adapter", binding=(fake.ffi, fake))  # type: ignore[arg-type]
