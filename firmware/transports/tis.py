"""The TIS FIFO protocol (TCG PC Client Platform TPM Profile, "FIFO interface"), bus-independent.

One TPM command is moved through a handful of registers: claim the locality (ACCESS), make the
TPM ready (STS.commandReady), write the command into DATA_FIFO in burstCount-sized pieces while
STS.Expect says more is wanted, the last byte alone, start it (STS.tpmGo), wait for
STS.dataAvail, read the response header for its size and the rest in bursts, then return the TPM
to idle and give the locality back.

The state machine is sans-IO: `exchange_steps` is a generator that yields `Step`s (read a
register, write one, pause, verify the checksum of the data just moved) and is sent each step's
result; it never touches a bus or sleeps. `TisTransport` drives it against a `RegisterPort`, the
register access one bus gives (TIS over I²C, over SPI, a bus socket).

Every wait is bounded twice: by its PTP interface timeout (TIMEOUT_A 750 ms for the locality and
burstCount, TIMEOUT_B 2 s for commandReady, TIMEOUT_C 200 ms for stsValid) and by the caller's
deadline, whichever comes first. A TPM 2.0 waits TIMEOUT_A for a non-zero burstCount, as Linux
gives it (tpm_tis_core.c `get_burstcount`); the PTP's TIMEOUT_D (30 ms) bounds that wait only for
TPM 1.2, which edgekeeper does not drive. Polling starts at 1 ms and doubles to 8 ms.

After an error the TPM may be left mid-command; the next exchange recovers it (commandReady
aborts a half-sent command or drops an unread response), so nothing is sent after the deadline.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Protocol

from firmware.transports.errors import TransportError, TransportProtocolError, TransportTimeout

MAX_COMMAND_SIZE = 4096  # the TPM2 TCTI buffer size tpm2-tss and the kernel use
HEADER_SIZE = 10  # tag (2), size (4), code (4)
_SIZE_END = 6  # the size field ends at byte 6 of the header

POLL_FIRST = 0.001
POLL_MAX = 0.008
CHECKSUM_TRIES = 3  # sends (and response reads) tried when the bus checksum disagrees


class Register(enum.Enum):
    """The logical TIS registers; each bus maps them to its own addresses."""

    ACCESS = "ACCESS"
    INT_ENABLE = "INT_ENABLE"
    STS = "STS"
    DATA_FIFO = "DATA_FIFO"
    INTERFACE_CAPABILITY = "INTERFACE_CAPABILITY"
    DID_VID = "DID_VID"
    RID = "RID"


# TPM_ACCESS (1 byte)
ACCESS_VALID = 0x80  # tpmRegValidSts
ACCESS_ACTIVE_LOCALITY = 0x20  # read: this locality is active; write 1: relinquish it
ACCESS_REQUEST_USE = 0x02

# TPM_STS, byte 0 (bits 7:0); burstCount is bits 23:8
STS_VALID = 0x80
STS_COMMAND_READY = 0x40
STS_GO = 0x20
STS_DATA_AVAIL = 0x10
STS_EXPECT = 0x08
STS_RESPONSE_RETRY = 0x02


@dataclass(frozen=True)
class TisTimeouts:
    """The PTP interface timeouts, in seconds, and the longest a command may run (key generation
    on a slow TPM: Linux's TPM2 "long long" duration)."""

    a: float = 0.750
    b: float = 2.0
    c: float = 0.200
    command: float = 300.0


@dataclass(frozen=True)
class Read:
    """Read `size` bytes of `register`; the result is those bytes."""

    register: Register
    size: int


@dataclass(frozen=True)
class Write:
    """Write `data` to `register`; the result is None."""

    register: Register
    data: bytes


@dataclass(frozen=True)
class Pause:
    """Wait `seconds` before the next step; the result is None."""

    seconds: float


@dataclass(frozen=True)
class Verify:
    """Does the TPM's checksum of the FIFO data just moved match `data`? The result is a bool."""

    data: bytes


Step = Read | Write | Pause | Verify
StepResult = bytes | bool | None
Steps = Generator[Step, StepResult, bytes]


class RegisterPort(Protocol):
    """Register access to one TIS TPM at one locality over one bus (I²C, SPI, a bus socket)."""

    where: str  # "the TIS-I²C TPM at 0x2e on /dev/i2c-1"
    max_burst: int  # most FIFO bytes one bus transaction may carry (SPI: 64)

    def read(self, register: Register, size: int, deadline: float) -> bytes: ...

    def write(self, register: Register, data: bytes, deadline: float) -> None: ...

    def verify(self, data: bytes, deadline: float) -> bool: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class TisIdentity:
    """Who answers: DID_VID split in two, and RID."""

    vendor_id: int
    device_id: int
    revision: int

    def __str__(self) -> str:
        return (
            f"vendor {self.vendor_id:#06x} device {self.device_id:#06x} "
            f"revision {self.revision:#04x}"
        )


def burst_count(sts: bytes) -> int:
    """STS bits 23:8, little-endian."""
    return int.from_bytes(sts[1:3], "little")


def command_size_error(command: bytes) -> TransportError | None:
    """Why `command` cannot be sent as a TPM command, or None."""
    if not HEADER_SIZE <= len(command) <= MAX_COMMAND_SIZE:
        return TransportError(
            f"a TPM command of {len(command)} bytes cannot be sent: commands are "
            f"{HEADER_SIZE} to {MAX_COMMAND_SIZE} bytes",
            hint="this is a bug in the caller; report it",
        )
    declared = int.from_bytes(command[2:_SIZE_END], "big")
    if declared != len(command):
        return TransportError(
            f"a TPM command of {len(command)} bytes says in its header it has {declared}",
            hint="this is a bug in the caller; report it",
        )
    return None


class _Exchange:
    """One command's trip through the FIFO; the generators below yield its steps."""

    def __init__(
        self,
        *,
        where: str,
        max_burst: int,
        deadline: float,
        clock: Callable[[], float],
        timeouts: TisTimeouts,
    ) -> None:
        self.where = where
        self.max_burst = max_burst
        self.deadline = deadline
        self.clock = clock
        self.timeouts = timeouts

    def run(self, command: bytes) -> Steps:
        yield from self.claim_locality()
        for attempt in range(1, CHECKSUM_TRIES + 1):
            sts = yield from self.make_ready()
            yield from self.send(command, sts)
            if (yield from self.verify(command)):
                break
            if attempt == CHECKSUM_TRIES:
                raise self.checksum_error("command", attempt)
        yield from self.write_sts(STS_GO)
        response = yield from self.receive()
        yield from self.write_sts(STS_COMMAND_READY)
        yield from self.write(Register.ACCESS, bytes([ACCESS_ACTIVE_LOCALITY]))
        return response

    # -- locality and readiness

    def claim_locality(self) -> Generator[Step, StepResult, None]:
        wanted = ACCESS_VALID | ACCESS_ACTIVE_LOCALITY
        access = yield from self.read(Register.ACCESS, 1)
        if access[0] & wanted == wanted:
            return
        yield from self.write(Register.ACCESS, bytes([ACCESS_REQUEST_USE]))
        yield from self.wait(
            "the locality (ACCESS.activeLocality)",
            Register.ACCESS,
            1,
            lambda value: value[0] & wanted == wanted,
            self.timeouts.a,
            "TIMEOUT_A",
        )

    def make_ready(self) -> Generator[Step, StepResult, bytes]:
        """STS once the TPM is ready for a command."""
        sts = yield from self.read(Register.STS, 4)
        if sts[0] & STS_COMMAND_READY:
            return sts
        yield from self.write_sts(STS_COMMAND_READY)
        return (
            yield from self.wait(
                "STS.commandReady",
                Register.STS,
                4,
                lambda value: value[0] & STS_COMMAND_READY != 0,
                self.timeouts.b,
                "TIMEOUT_B",
            )
        )

    # -- sending

    def send(self, command: bytes, sts: bytes) -> Generator[Step, StepResult, None]:
        sent = 0
        while sent < len(command):
            if not (sts[0] & STS_VALID and burst_count(sts)):
                sts = yield from self.wait_burst()
            rest = len(command) - sent
            size = 1 if rest == 1 else min(burst_count(sts), self.max_burst, rest - 1)
            yield from self.write(Register.DATA_FIFO, command[sent : sent + size])
            sent += size
            sts = yield from self.wait_valid()
            expect = bool(sts[0] & STS_EXPECT)
            if sent < len(command) and not expect:
                raise TransportProtocolError(
                    f"{self.where} stopped expecting command bytes after {sent} of {len(command)}",
                    hint="the TPM may have been reset or taken by another locality; try again",
                )
            if sent == len(command) and expect:
                raise TransportProtocolError(
                    f"{self.where} still expects command bytes after all {len(command)}",
                    hint="the TPM lost bytes on the bus; check the wiring and the bus speed",
                )

    # -- receiving

    def receive(self) -> Generator[Step, StepResult, bytes]:
        for attempt in range(1, CHECKSUM_TRIES + 1):
            sts = yield from self.wait(
                "STS.dataAvail (the command's response)",
                Register.STS,
                4,
                lambda value: value[0] & (STS_VALID | STS_DATA_AVAIL) == STS_VALID | STS_DATA_AVAIL,
                self.timeouts.command,
                "the longest command duration",
            )
            response = yield from self.read_response(sts)
            if (yield from self.verify(response)):
                return response
            if attempt < CHECKSUM_TRIES:
                yield from self.write_sts(STS_RESPONSE_RETRY)
        raise self.checksum_error("response", CHECKSUM_TRIES)

    def read_response(self, sts: bytes) -> Generator[Step, StepResult, bytes]:
        response = bytearray()
        size = _SIZE_END
        while len(response) < size:
            if not sts[0] & STS_DATA_AVAIL:
                raise TransportProtocolError(
                    f"{self.where} stopped offering response bytes after {len(response)}"
                    + (f" of {size}" if len(response) >= _SIZE_END else ""),
                    hint="the TPM may have been reset; try again",
                )
            if not burst_count(sts):
                sts = yield from self.wait_burst()
                continue
            take = min(burst_count(sts), self.max_burst, size - len(response))
            response += yield from self.read(Register.DATA_FIFO, take)
            if size == _SIZE_END and len(response) == _SIZE_END:
                size = self.response_size(bytes(response))
            sts = yield from self.wait_valid()
        if sts[0] & STS_DATA_AVAIL:
            raise TransportProtocolError(
                f"{self.where} offers more response bytes than the {size} its header gives",
                hint="the TPM lost bytes on the bus; check the wiring and the bus speed",
            )
        return bytes(response)

    def response_size(self, start: bytes) -> int:
        size = int.from_bytes(start[2:_SIZE_END], "big")
        if not HEADER_SIZE <= size <= MAX_COMMAND_SIZE:
            raise TransportProtocolError(
                f"{self.where} answered a response header giving {size} bytes "
                f"(responses are {HEADER_SIZE} to {MAX_COMMAND_SIZE} bytes)",
                hint="the TPM lost bytes on the bus; check the wiring and the bus speed",
            )
        return size

    # -- waits

    def wait_valid(self) -> Generator[Step, StepResult, bytes]:
        return (
            yield from self.wait(
                "STS.stsValid",
                Register.STS,
                4,
                lambda value: value[0] & STS_VALID != 0,
                self.timeouts.c,
                "TIMEOUT_C",
            )
        )

    def wait_burst(self) -> Generator[Step, StepResult, bytes]:
        return (
            yield from self.wait(
                "a non-zero STS.burstCount",
                Register.STS,
                4,
                lambda value: value[0] & STS_VALID != 0 and burst_count(value) > 0,
                self.timeouts.a,
                "TIMEOUT_A",
            )
        )

    def wait(
        self,
        what: str,
        register: Register,
        size: int,
        done: Callable[[bytes], bool],
        timeout: float,
        timeout_name: str,
    ) -> Generator[Step, StepResult, bytes]:
        """Poll `register` until `done(value)`; TransportTimeout past `timeout` or the deadline."""
        start = self.clock()
        limit = min(start + timeout, self.deadline)
        interval = POLL_FIRST
        while True:
            value = yield from self.read(register, size)
            if done(value):
                return value
            now = self.clock()
            if now >= limit:
                if limit == self.deadline:
                    bound = "before the command's deadline"
                else:
                    bound = f"within {timeout_name} ({_ms(timeout)})"
                raise TransportTimeout(
                    f"{self.where} did not give {what} {bound}",
                    hint="check that the TPM is powered and not held in reset; a longer "
                    "deadline may help a slow TPM",
                )
            yield Pause(min(interval, limit - now))
            interval = min(interval * 2, POLL_MAX)

    # -- single steps

    def read(self, register: Register, size: int) -> Generator[Step, StepResult, bytes]:
        value = yield Read(register, size)
        if not isinstance(value, bytes) or len(value) != size:
            raise TypeError(f"the result of reading {size} bytes of {register.name} is {value!r}")
        return value

    def write(self, register: Register, data: bytes) -> Generator[Step, StepResult, None]:
        yield Write(register, data)

    def write_sts(self, bits: int) -> Generator[Step, StepResult, None]:
        yield Write(Register.STS, bytes([bits]))

    def verify(self, data: bytes) -> Generator[Step, StepResult, bool]:
        matches = yield Verify(data)
        if not isinstance(matches, bool):
            raise TypeError(f"the result of a checksum verification is {matches!r}")
        return matches

    def checksum_error(self, what: str, tries: int) -> TransportProtocolError:
        return TransportProtocolError(
            f"{self.where}: the bus checksum of the {what} disagreed {tries} times",
            hint="the bus corrupts data; check the wiring, pull-ups and the bus speed",
        )


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:g} ms"


def exchange_steps(
    command: bytes,
    *,
    where: str,
    max_burst: int,
    deadline: float,
    clock: Callable[[], float] = time.monotonic,
    timeouts: TisTimeouts = TisTimeouts(),
) -> Steps:
    """The steps that move `command` to the TPM and its response back; the response is the
    generator's return value. Raises TransportTimeout / TransportProtocolError as it finds them."""
    problem = command_size_error(command)
    if problem is not None:
        raise problem
    exchange = _Exchange(
        where=where, max_burst=max_burst, deadline=deadline, clock=clock, timeouts=timeouts
    )
    return (yield from exchange.run(command))


def identity_steps(*, where: str) -> Steps:
    """Read DID_VID and RID; the return value is DID_VID (4 bytes) + RID (1 byte). A TPM that
    answers 0 or all ones is absent (TransportError)."""
    did_vid = yield Read(Register.DID_VID, 4)
    rid = yield Read(Register.RID, 1)
    if not isinstance(did_vid, bytes) or not isinstance(rid, bytes):
        raise TypeError("register reads must give bytes")
    if did_vid in (b"\0\0\0\0", b"\xff\xff\xff\xff"):
        raise TransportError(
            f"no TPM answers as {where}: DID_VID reads {did_vid.hex()}",
            hint="check the device URL (bus, address, locality) and that the TPM is powered",
        )
    return did_vid + rid


class TisTransport:
    """A `Transport` over a `RegisterPort`: drives the TIS state machine against the bus."""

    def __init__(
        self,
        port: RegisterPort,
        *,
        timeouts: TisTimeouts = TisTimeouts(),
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.port = port
        self.where = port.where
        self._timeouts = timeouts
        self._sleep = sleep
        self._clock = clock

    def exchange(self, command: bytes, deadline: float) -> bytes:
        """Send one whole TPM command, return its whole response."""
        steps = exchange_steps(
            command,
            where=self.where,
            max_burst=self.port.max_burst,
            deadline=deadline,
            clock=self._clock,
            timeouts=self._timeouts,
        )
        return self._drive(steps, deadline)

    def identify(self, deadline: float) -> TisIdentity:
        """Who answers on the port; TransportError when nothing does."""
        raw = self._drive(identity_steps(where=self.where), deadline)
        did_vid = int.from_bytes(raw[:4], "little")
        return TisIdentity(vendor_id=did_vid & 0xFFFF, device_id=did_vid >> 16, revision=raw[4])

    def close(self) -> None:
        self.port.close()

    def _drive(self, steps: Steps, deadline: float) -> bytes:
        result: StepResult = None
        try:
            while True:
                step = steps.send(result)
                result = self._perform(step, deadline)
        except StopIteration as done:
            value: bytes = done.value
            return value
        finally:
            steps.close()

    def _perform(self, step: Step, deadline: float) -> StepResult:
        if isinstance(step, Read):
            return self.port.read(step.register, step.size, deadline)
        if isinstance(step, Write):
            self.port.write(step.register, step.data, deadline)
            return None
        if isinstance(step, Pause):
            self._sleep(step.seconds)
            return None
        return self.port.verify(step.data, deadline)
