"""TIS over SPI (TCG PC Client PTP, "SPI hardware protocol"): frame headers, wait states, framing.

A register access is one or more frames of at most 64 bytes, each one chip-select period: a
4-byte header (byte 0: 0x80 for a read, 0 for a write, or'ed with size-1; bytes 1..3: the
24-bit address 0xD4_0000 | locality << 12 | register offset, most significant first), then the
data. The bus is full duplex and the TPM drives MISO during the header: bit 0 of the fourth byte
it sends says whether the data may follow at once. If it is 0 the TPM inserts wait states and
the host clocks single bytes, chip select held, until one has bit 0 set (Linux
`tpm_tis_spi_main.c` gives up after 50, tpm2-tss's spi helper after 256; here `WAIT_STATE_LIMIT`
and the deadline, whichever comes first). There is no checksum and no locality register.

`FrameHeader` and `SpiFrame` are sans-IO: `SpiFrame` says what to clock next (`Clock`) from the
bytes the TPM sent back, until the frame is `Done` or `Stalled`. `SpiRegisterPort` runs frames
over an `SpiBus` (spi_bus: a spidev node or a bus socket) as the `RegisterPort` of
`TisTransport`; `open_tis_spi` opens all of it from a `tis-spi://` URL.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from firmware.transports.address import DeviceUrl
from firmware.transports.errors import BusFault, TransportError, TransportTimeout
from firmware.transports.spi_bus import SpiBus, open_spi_bus
from firmware.transports.tis import Register, TisTransport
from firmware.transports.transport import Transport

MAX_FRAME = 64  # data bytes in one frame (the PTP's largest transfer size)
HEADER_SIZE = 4
WAIT_STATE_LIMIT = 256  # single-byte polls for the end of the wait states in one frame
BUS_TRIES = 2  # a frame the bus refuses (an errno, or wait states without end) is tried again once
RELEASE_GRACE = 0.05  # seconds allowed, past a deadline, to release a chip select left held

DEFAULT_HZ = 10_000_000
MIN_HZ, MAX_HZ = 100_000, 50_000_000
MAX_LOCALITY = 4

_READ = 0x80
_RESERVED = 0x40
_BASE = 0xD4_0000
_READY = 0x01

# Register offsets within a locality's 4 KiB window (PTP, TIS register space; Linux tpm_tis_core.h).
OFFSETS: Mapping[Register, int] = {
    Register.ACCESS: 0x0000,
    Register.INT_ENABLE: 0x0008,
    Register.INTERFACE_CAPABILITY: 0x0014,
    Register.STS: 0x0018,
    Register.DATA_FIFO: 0x0024,
    Register.DID_VID: 0x0F00,
    Register.RID: 0x0F04,
}


def register_address(register: Register, locality: int) -> int:
    """The 24-bit SPI address of `register` at `locality` (0..4)."""
    if not 0 <= locality <= MAX_LOCALITY:
        raise ValueError(f"locality {locality} is not 0..{MAX_LOCALITY}")
    return _BASE | locality << 12 | OFFSETS[register]


@dataclass(frozen=True)
class FrameHeader:
    """The 4 bytes that open a frame: direction, data size (1..64) and 24-bit address."""

    read: bool
    size: int
    address: int

    def __post_init__(self) -> None:
        if not 1 <= self.size <= MAX_FRAME:
            raise ValueError(f"an SPI frame carries 1 to {MAX_FRAME} bytes, not {self.size}")
        if self.address >> 16 != _BASE >> 16:
            raise ValueError(f"{self.address:#x} is not a TPM address (0xd40000..0xd4ffff)")

    def encode(self) -> bytes:
        first = (_READ if self.read else 0) | (self.size - 1)
        return bytes([first]) + self.address.to_bytes(3, "big")


def decode_header(raw: bytes) -> FrameHeader:
    """The header `raw` encodes; ValueError when it is not a TPM frame header."""
    if len(raw) != HEADER_SIZE:
        raise ValueError(f"an SPI frame header has {HEADER_SIZE} bytes, not {len(raw)}")
    if raw[0] & _RESERVED:
        raise ValueError(f"header byte 0x{raw[0]:02x} sets the reserved bit 6")
    size = (raw[0] & 0x3F) + 1
    return FrameHeader(bool(raw[0] & _READ), size, int.from_bytes(raw[1:], "big"))


@dataclass(frozen=True)
class Clock:
    """Clock `tx` out on MOSI (the TPM sends as many bytes back); keep chip select asserted
    afterwards when `hold`."""

    tx: bytes
    hold: bool


@dataclass(frozen=True)
class Done:
    """The frame is over, chip select released: `data` is what it read (empty for a write)."""

    data: bytes
    wait_states: int


@dataclass(frozen=True)
class Stalled:
    """The TPM was still inserting wait states after `wait_states` polls; chip select is held."""

    wait_states: int


FrameStep = Clock | Done | Stalled


class SpiFrame:
    """One frame as a state machine: `step` is what to do next; `receive` takes the bytes the TPM
    sent during the last `Clock` and returns the next step. Any bytes of the right length are a
    valid answer: only bit 0 of the header's last byte and of each poll byte is read."""

    def __init__(
        self, header: FrameHeader, payload: bytes = b"", *, wait_limit: int = WAIT_STATE_LIMIT
    ) -> None:
        expected = 0 if header.read else header.size
        if len(payload) != expected:
            raise ValueError(f"a frame of {header} carries {expected} bytes, not {len(payload)}")
        self.header = header
        self.wait_limit = wait_limit
        self.wait_states = 0
        self._payload = payload
        self._in_data = False
        self.step: FrameStep = Clock(header.encode(), hold=True)

    def receive(self, rx: bytes) -> FrameStep:
        step = self.step
        if not isinstance(step, Clock):
            raise ValueError(f"the frame is over ({step}); it receives nothing more")
        if len(rx) != len(step.tx):
            raise ValueError(f"{len(step.tx)} bytes were clocked, {len(rx)} came back")
        if self._in_data:
            self.step = Done(rx if self.header.read else b"", self.wait_states)
        elif rx[-1] & _READY:
            self._in_data = True
            data = bytes(self.header.size) if self.header.read else self._payload
            self.step = Clock(data, hold=False)
        elif self.wait_states == self.wait_limit:
            self.step = Stalled(self.wait_states)
        else:
            self.wait_states += 1
            self.step = Clock(b"\0", hold=True)
        return self.step


def frame_headers(register: Register, locality: int, size: int, *, read: bool) -> list[FrameHeader]:
    """The headers of the frames that move `size` bytes of `register`: at most 64 bytes each,
    all at DATA_FIFO's address for the FIFO, at successive addresses for any other register."""
    base = register_address(register, locality)
    advance = register is not Register.DATA_FIFO
    return [
        FrameHeader(read, min(MAX_FRAME, size - start), base + (start if advance else 0))
        for start in range(0, size, MAX_FRAME)
    ]


class SpiRegisterPort:
    """The TIS registers of one locality of an SPI TPM, frame by frame over `bus`."""

    max_burst = MAX_FRAME

    def __init__(
        self,
        bus: SpiBus,
        *,
        locality: int = 0,
        wait_limit: int = WAIT_STATE_LIMIT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.where = bus.where
        self.locality = locality
        self._bus = bus
        self._wait_limit = wait_limit
        self._clock = clock

    def read(self, register: Register, size: int, deadline: float) -> bytes:
        headers = frame_headers(register, self.locality, size, read=True)
        return b"".join(self._frame(register, header, b"", deadline) for header in headers)

    def write(self, register: Register, data: bytes, deadline: float) -> None:
        headers = frame_headers(register, self.locality, len(data), read=False)
        for start, header in zip(range(0, len(data), MAX_FRAME), headers, strict=True):
            self._frame(register, header, data[start : start + header.size], deadline)

    def verify(self, data: bytes, deadline: float) -> bool:
        """SPI has no checksum register: what was moved is taken as moved."""
        return True

    def close(self) -> None:
        self._bus.close()

    def _frame(
        self, register: Register, header: FrameHeader, payload: bytes, deadline: float
    ) -> bytes:
        """Run one frame, trying it again once when the bus refuses it. A refused FIFO frame may
        have moved some bytes before it failed; the FIFO protocol above finds a command or a
        response that no longer adds up (STS.Expect, dataAvail, the size in the header)."""
        reason = ""
        for _ in range(BUS_TRIES):
            try:
                end = self._run(SpiFrame(header, payload, wait_limit=self._wait_limit), deadline)
            except OSError as exc:
                reason = f"the bus refused a transfer: {exc.strerror or exc} (errno {exc.errno})"
                continue
            if isinstance(end, Done):
                return end.data
            reason = f"the TPM was still in wait states after {end.wait_states} polls"
        verb = "reading" if header.read else "writing"
        raise BusFault(
            f"{self.where}: {verb} {register.name} failed {BUS_TRIES} times: {reason}",
            hint="check the wiring and the chip select; a lower hz= in the device URL helps "
            "long wires",
        )

    def _run(self, frame: SpiFrame, deadline: float) -> Done | Stalled:
        """Clock `frame` to its end; a refused transfer (`OSError`) releases chip select."""
        held = False
        step = frame.step
        try:
            while isinstance(step, Clock):
                if self._clock() >= deadline:
                    raise TransportTimeout(
                        f"{self.where} did not finish an SPI frame before the command's deadline",
                        hint="a longer deadline may help a slow TPM",
                    )
                rx = self._bus.clock(step.tx, hold=step.hold, deadline=deadline)
                held = step.hold
                step = frame.receive(rx)
        except OSError:
            held = False  # the kernel (and a bus socket) release chip select with the error
            raise
        finally:
            if held:
                self._release(deadline)
        return step

    def _release(self, deadline: float) -> None:
        grace = max(deadline, self._clock() + RELEASE_GRACE)
        # Best effort: the frame has already failed and that error is the one to report; a bus
        # that cannot release chip select fails the next frame with its own error.
        with contextlib.suppress(OSError, TransportError):
            self._bus.release(grace)


def describe(path: str, hz: int, locality: int) -> str:
    """`where` for messages: "the TIS-SPI TPM on /dev/spidev0.1 (10 MHz)"."""
    detail = _frequency(hz) + (f", locality {locality}" if locality else "")
    return f"the TIS-SPI TPM on {path} ({detail})"


def _frequency(hz: int) -> str:
    if hz >= 1_000_000:
        return f"{hz / 1_000_000:g} MHz"
    return f"{hz / 1000:g} kHz"


def open_tis_spi(url: DeviceUrl) -> Transport:
    """The TPM at `url` (`tis-spi:///dev/spidev0.1?hz=10000000&locality=0`, or a bus socket's
    path), driven through its TIS registers."""
    hz = url.param_int("hz", DEFAULT_HZ, lo=MIN_HZ, hi=MAX_HZ)
    locality = url.param_int("locality", 0, lo=0, hi=MAX_LOCALITY)
    bus = open_spi_bus(url.path, hz, describe(url.path, hz, locality))
    return TisTransport(SpiRegisterPort(bus, locality=locality))
