"""TIS over SPI without a bus: frame headers (known bytes, round trips of any header), the
wait-state state machine (any number of wait bytes up to the bound, then the data; past the
bound, a stall), the split into 64-byte frames, and `SpiRegisterPort`'s exact bus traffic against
a scripted bus: chip select held across header and polls, released with the data, a refused
transfer tried once more, a stalled or late frame's chip select released."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware.transports.errors import BusFault, TransportTimeout
from firmware.transports.tis import Register
from firmware.transports.tis_spi import (
    MAX_FRAME,
    WAIT_STATE_LIMIT,
    Clock,
    Done,
    FrameHeader,
    SpiFrame,
    SpiRegisterPort,
    Stalled,
    decode_header,
    describe,
    frame_headers,
    register_address,
)

WHERE = "the TIS-SPI TPM on /test/spi (10 MHz)"
FAR = 1e12


def test_headers_of_known_accesses() -> None:
    """The bytes Linux and tpm2-tss put on the wire for the same accesses."""
    sts = FrameHeader(True, 4, register_address(Register.STS, 0))
    assert sts.encode() == bytes.fromhex("83d40018")
    fifo = FrameHeader(False, 64, register_address(Register.DATA_FIFO, 0))
    assert fifo.encode() == bytes.fromhex("3fd40024")
    access = FrameHeader(False, 1, register_address(Register.ACCESS, 2))
    assert access.encode() == bytes.fromhex("00d42000")
    did_vid = FrameHeader(True, 4, register_address(Register.DID_VID, 4))
    assert did_vid.encode() == bytes.fromhex("83d44f00")


@pytest.mark.parametrize(
    ("register", "offset"),
    [
        (Register.ACCESS, 0x00),
        (Register.INT_ENABLE, 0x08),
        (Register.INTERFACE_CAPABILITY, 0x14),
        (Register.STS, 0x18),
        (Register.DATA_FIFO, 0x24),
        (Register.DID_VID, 0xF00),
        (Register.RID, 0xF04),
    ],
)
@pytest.mark.parametrize("locality", range(5))
def test_register_addresses(register: Register, offset: int, locality: int) -> None:
    assert register_address(register, locality) == 0xD40000 + locality * 0x1000 + offset


def test_locality_past_four_is_refused() -> None:
    with pytest.raises(ValueError, match="locality 5"):
        register_address(Register.STS, 5)


@pytest.mark.parametrize(
    ("size", "address"), [(0, 0xD40018), (65, 0xD40018), (4, 0xD50018), (4, 0x18)]
)
def test_headers_outside_the_protocol_are_refused(size: int, address: int) -> None:
    with pytest.raises(ValueError):
        FrameHeader(True, size, address)


@given(st.booleans(), st.integers(1, MAX_FRAME), st.integers(0xD40000, 0xD4FFFF))
def test_any_header_decodes_to_itself(read: bool, size: int, address: int) -> None:
    header = FrameHeader(read, size, address)
    raw = header.encode()
    assert len(raw) == 4
    assert decode_header(raw) == header


@given(st.binary(min_size=0, max_size=6))
def test_decoding_any_bytes_gives_a_header_or_value_error(raw: bytes) -> None:
    try:
        header = decode_header(raw)
    except ValueError:
        assert len(raw) != 4 or raw[0] & 0x40 or raw[1] != 0xD4
    else:
        assert header.encode() == raw


def _noise(data: st.DataObject, ready: bool) -> int:
    """A MISO byte whose bit 0 is `ready` and whose other bits are anything."""
    return data.draw(st.integers(0, 0x7F)) << 1 | int(ready)


@st.composite
def frames_with_wait_states(draw: st.DrawFn) -> tuple[FrameHeader, bytes, int, int]:
    limit = draw(st.integers(0, 20))
    waits = draw(st.integers(0, limit + 3))
    header = FrameHeader(
        draw(st.booleans()), draw(st.integers(1, MAX_FRAME)), draw(st.integers(0xD40000, 0xD4FFFF))
    )
    data = draw(st.binary(min_size=header.size, max_size=header.size))
    return header, data, waits, limit


@given(frames_with_wait_states(), st.data())
def test_wait_states_up_to_the_bound_then_data(
    frame_case: tuple[FrameHeader, bytes, int, int], data: st.DataObject
) -> None:
    """The TPM holds the frame for `waits` bytes (0: ready in the header's last byte); the host
    polls single bytes with CS held, then clocks the data and releases CS. One wait more than the
    bound stalls the frame with CS still held."""
    header, payload, waits, limit = frame_case
    frame = SpiFrame(header, b"" if header.read else payload, wait_limit=limit)
    assert frame.step == Clock(header.encode(), hold=True)
    header_rx = bytes(_noise(data, False) for _ in range(3)) + bytes([_noise(data, waits == 0)])
    step = frame.receive(header_rx)
    for poll in range(1, waits + 1):
        if poll > limit:
            assert step == Stalled(limit)
            return
        assert step == Clock(b"\0", hold=True)
        step = frame.receive(bytes([_noise(data, poll == waits)]))
    assert step == Clock(bytes(header.size) if header.read else payload, hold=False)
    end = frame.receive(payload if header.read else bytes(header.size))
    assert end == Done(payload if header.read else b"", waits)
    assert frame.wait_states == waits


def test_default_wait_state_bound() -> None:
    frame = SpiFrame(FrameHeader(True, 1, 0xD40000))
    step = frame.receive(b"\0\0\0\0")
    polls = 0
    while isinstance(step, Clock):
        polls += 1
        step = frame.receive(b"\0")
    assert polls == WAIT_STATE_LIMIT
    assert step == Stalled(WAIT_STATE_LIMIT)


def test_a_frame_checks_what_it_is_given() -> None:
    header = FrameHeader(False, 2, 0xD40024)
    with pytest.raises(ValueError, match="carries 2 bytes, not 1"):
        SpiFrame(header, b"x")
    with pytest.raises(ValueError, match="carries 0 bytes"):
        SpiFrame(FrameHeader(True, 2, 0xD40024), b"xy")
    frame = SpiFrame(header, b"xy")
    with pytest.raises(ValueError, match="4 bytes were clocked, 3 came back"):
        frame.receive(b"\0\0\1")
    frame.receive(b"\0\0\0\1")
    frame.receive(b"\0\0")
    with pytest.raises(ValueError, match="the frame is over"):
        frame.receive(b"\0\0")


@given(st.sampled_from(list(Register)), st.integers(1, 1000), st.integers(0, 4))
def test_frames_split_at_64_bytes(register: Register, size: int, locality: int) -> None:
    headers = frame_headers(register, locality, size, read=True)
    assert sum(h.size for h in headers) == size
    assert all(h.size == MAX_FRAME for h in headers[:-1])
    base = register_address(register, locality)
    if register is Register.DATA_FIFO:
        assert {h.address for h in headers} == {base}
    else:
        assert [h.address for h in headers] == [base + i * MAX_FRAME for i in range(len(headers))]


@dataclass
class ScriptedBus:
    """A bus that expects exactly `script`: (tx, hold) in, MISO bytes or an errno out."""

    script: list[tuple[bytes, bool, bytes | int]]
    where: str = WHERE
    releases: int = 0
    closed: bool = False
    seen: list[tuple[bytes, bool]] = field(default_factory=list)

    def clock(self, tx: bytes, *, hold: bool, deadline: float) -> bytes:
        self.seen.append((tx, hold))
        assert self.script, f"unexpected transfer {tx.hex()} hold={hold}"
        want_tx, want_hold, answer = self.script.pop(0)
        assert (tx.hex(), hold) == (want_tx.hex(), want_hold)
        if isinstance(answer, int):
            raise OSError(answer, "refused")
        return answer

    def release(self, deadline: float) -> None:
        self.releases += 1

    def close(self) -> None:
        self.closed = True


H = bytes.fromhex
NOT_READY = H("00000000")
READY = H("00000001")


def test_a_read_without_wait_states_is_two_messages() -> None:
    bus = ScriptedBus([(H("83d40018"), True, READY), (bytes(4), False, H("a0400000"))])
    port = SpiRegisterPort(bus)
    assert port.read(Register.STS, 4, FAR) == H("a0400000")
    assert not bus.script
    assert bus.releases == 0


def test_wait_states_are_polled_with_cs_held() -> None:
    bus = ScriptedBus(
        [
            (H("80d41f04"), True, NOT_READY),
            (b"\0", True, b"\x00"),
            (b"\0", True, b"\xfe"),
            (b"\0", True, b"\x01"),
            (b"\0", False, b"\x42"),
        ]
    )
    port = SpiRegisterPort(bus, locality=1)
    assert port.read(Register.RID, 1, FAR) == b"\x42"
    assert not bus.script


def test_a_long_write_is_cut_into_64_byte_frames() -> None:
    command = bytes(range(100))
    bus = ScriptedBus(
        [
            (H("3fd40024"), True, READY),
            (command[:64], False, bytes(64)),
            (H("23d40024"), True, READY),
            (command[64:], False, bytes(36)),
        ]
    )
    SpiRegisterPort(bus).write(Register.DATA_FIFO, command, FAR)
    assert not bus.script


def test_a_refused_transfer_is_tried_once_more() -> None:
    bus = ScriptedBus(
        [
            (H("00d40000"), True, READY),
            (b"\x02", False, 5),
            (H("00d40000"), True, READY),
            (b"\x02", False, b"\0"),
        ]
    )
    SpiRegisterPort(bus).write(Register.ACCESS, b"\x02", FAR)
    assert not bus.script
    assert bus.releases == 0  # the kernel released CS with the error


def test_a_transfer_refused_twice_is_a_bus_fault() -> None:
    bus = ScriptedBus([(H("83d40f00"), True, 121), (H("83d40f00"), True, 121)])
    with pytest.raises(BusFault) as caught:
        SpiRegisterPort(bus).read(Register.DID_VID, 4, FAR)
    message = caught.value.render()
    assert WHERE in message
    assert "reading DID_VID failed 2 times" in message
    assert "errno 121" in message


def test_endless_wait_states_release_cs_and_fail_after_a_retry() -> None:
    frame: list[tuple[bytes, bool, bytes | int]] = [(H("83d40018"), True, NOT_READY)]
    frame += [(b"\0", True, b"\0")] * 3
    bus = ScriptedBus(frame * 2)
    with pytest.raises(BusFault, match="still in wait states after 3 polls"):
        SpiRegisterPort(bus, wait_limit=3).read(Register.STS, 4, FAR)
    assert not bus.script
    assert bus.releases == 2


def test_the_deadline_ends_a_frame_and_releases_cs() -> None:
    now = [0.0]

    def clock() -> float:
        now[0] += 1.0
        return now[0]

    bus = ScriptedBus([(H("83d40018"), True, NOT_READY), (b"\0", True, b"\0")])
    with pytest.raises(TransportTimeout, match="did not finish an SPI frame"):
        SpiRegisterPort(bus, clock=clock).read(Register.STS, 4, 2.5)
    assert not bus.script
    assert bus.releases == 1


def test_the_port_as_tis_sees_it() -> None:
    bus = ScriptedBus([])
    port = SpiRegisterPort(bus)
    assert port.max_burst == 64
    assert port.where == WHERE
    assert port.verify(b"anything", FAR) is True
    port.close()
    assert bus.closed


@pytest.mark.parametrize(
    ("hz", "locality", "where"),
    [
        (10_000_000, 0, "the TIS-SPI TPM on /dev/spidev0.1 (10 MHz)"),
        (12_500_000, 0, "the TIS-SPI TPM on /dev/spidev0.1 (12.5 MHz)"),
        (500_000, 3, "the TIS-SPI TPM on /dev/spidev0.1 (500 kHz, locality 3)"),
    ],
)
def test_where(hz: int, locality: int, where: str) -> None:
    assert describe("/dev/spidev0.1", hz, locality) == where
