"""A scripted TIS register file and a fake clock for the TIS tests (no bus, no sleeping).

`FakeTis` keeps the FIFO interface's states (idle, ready, reception, execution, completion) the
way the PTP describes them, answers a command with `respond(command)` and can misbehave on cue:
the locality or commandReady never granted, burstCount 0 for n reads, Expect cleared early, a slow
TPM, checksum mismatches. It logs every register operation for the tests to assert the order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from firmware.transports.tis import (
    ACCESS_ACTIVE_LOCALITY,
    ACCESS_REQUEST_USE,
    ACCESS_VALID,
    STS_COMMAND_READY,
    STS_DATA_AVAIL,
    STS_EXPECT,
    STS_GO,
    STS_RESPONSE_RETRY,
    STS_VALID,
    Register,
)


@dataclass
class FakeClock:
    """Monotonic time that moves only when the code under test sleeps (or reads, a little)."""

    now: float = 100.0
    per_read: float = 0.0001
    sleeps: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0, f"a pause of {seconds} s is a busy wait"
        self.sleeps.append(seconds)
        self.now += seconds


def echo_response(command: bytes) -> bytes:
    """A TPM2 success response carrying the command's body back (10-byte header + body)."""
    body = command[10:]
    return b"\x80\x01" + (10 + len(body)).to_bytes(4, "big") + b"\0\0\0\0" + body


def tpm_command(body: bytes = b"", code: int = 0x17B) -> bytes:
    """A TPM2 command with `body` after the header (default TPM2_CC_GetRandom)."""
    return b"\x80\x01" + (10 + len(body)).to_bytes(4, "big") + code.to_bytes(4, "big") + body


@dataclass
class FakeTis:
    """One TIS TPM at one locality, as a `RegisterPort`."""

    where: str = "the fake TIS TPM"
    max_burst: int = 64
    clock: FakeClock = field(default_factory=FakeClock)
    respond: Callable[[bytes], bytes] = echo_response
    burst: int = 16
    locality_active: bool = False
    grant_locality: bool = True
    grant_ready: bool = True
    ready_after_reads: int = 0  # STS reads before commandReady shows after it was asked for
    zero_burst_reads: int = 0  # STS reads that show burstCount 0 from now on
    exec_reads: int = 1  # STS reads after tpmGo before dataAvail
    drop_expect_after: int | None = None  # clear Expect once this many command bytes came in
    extra_response_bytes: int = 0  # dataAvail stays set after the response
    bad_command_checksums: int = 0
    bad_response_checksums: int = 0
    did_vid: bytes = b"\xd1\x15\x1b\x00"
    log: list[tuple[str, Register | None, bytes | int]] = field(default_factory=list)
    state: str = "idle"
    received: bytearray = field(default_factory=bytearray)
    response: bytes = b""
    offset: int = 0
    commands: list[bytes] = field(default_factory=list)
    closed: bool = False
    _ready_wait: int = 0

    # -- RegisterPort

    def read(self, register: Register, size: int, deadline: float) -> bytes:
        self.clock.now += self.clock.per_read
        self.log.append(("read", register, size))
        if register is Register.ACCESS:
            return bytes([ACCESS_VALID | (ACCESS_ACTIVE_LOCALITY if self.locality_active else 0)])
        if register is Register.STS:
            return self._sts()[:size]
        if register is Register.DATA_FIFO:
            assert self.state == "completion", f"FIFO read in state {self.state}"
            data = (self.response + b"\0" * self.extra_response_bytes)[
                self.offset : self.offset + size
            ]
            assert len(data) == size, "read past the response"
            self.offset += size
            return data
        if register is Register.DID_VID:
            return self.did_vid
        if register is Register.RID:
            return b"\x16"
        raise AssertionError(f"unexpected read of {register}")

    def write(self, register: Register, data: bytes, deadline: float) -> None:
        self.log.append(("write", register, data))
        if register is Register.ACCESS:
            assert len(data) == 1
            if data[0] == ACCESS_REQUEST_USE and self.grant_locality:
                self.locality_active = True
            elif data[0] == ACCESS_ACTIVE_LOCALITY:
                self.locality_active = False
            return
        if register is Register.STS:
            self._write_sts(data)
            return
        if register is Register.DATA_FIFO:
            assert self.locality_active, "FIFO write without the locality"
            assert self.state in ("ready", "reception"), f"FIFO write in state {self.state}"
            assert len(data) <= self.burst, f"a FIFO write of {len(data)} over burstCount"
            self.state = "reception"
            self.received += data
            return
        raise AssertionError(f"unexpected write to {register}")

    def verify(self, data: bytes, deadline: float) -> bool:
        self.log.append(("verify", None, len(data)))
        if self.state == "reception" or (self.state == "execution" and not self.response):
            if self.bad_command_checksums:
                self.bad_command_checksums -= 1
                return False
            return data == bytes(self.received)
        if self.bad_response_checksums:
            self.bad_response_checksums -= 1
            return False
        return data == self.response

    def close(self) -> None:
        self.closed = True

    # -- the device

    def fifo_writes(self) -> list[bytes]:
        return [
            entry[2]
            for entry in self.log
            if entry[:2] == ("write", Register.DATA_FIFO) and isinstance(entry[2], bytes)
        ]

    def fifo_reads(self) -> list[int]:
        return [
            entry[2]
            for entry in self.log
            if entry[:2] == ("read", Register.DATA_FIFO) and isinstance(entry[2], int)
        ]

    def writes_to(self, register: Register) -> list[bytes]:
        return [
            entry[2]
            for entry in self.log
            if entry[:2] == ("write", register) and isinstance(entry[2], bytes)
        ]

    def _expects_more(self) -> bool:
        if self.drop_expect_after is not None and len(self.received) >= self.drop_expect_after:
            return False
        if len(self.received) < 6:
            return True
        return len(self.received) < int.from_bytes(self.received[2:6], "big")

    def _sts(self) -> bytes:
        bits = STS_VALID
        burst = self.burst
        if self.zero_burst_reads:
            self.zero_burst_reads -= 1
            burst = 0
        if self.state == "ready":
            if self._ready_wait:
                self._ready_wait -= 1
                bits &= ~STS_VALID
            else:
                bits |= STS_COMMAND_READY
        elif self.state == "reception":
            bits |= STS_EXPECT if self._expects_more() else 0
        elif self.state == "execution":
            burst = 0
            if self.exec_reads:
                self.exec_reads -= 1
            else:
                self.state = "completion"
                self.offset = 0
        if self.state == "completion":
            if self.offset < len(self.response) + self.extra_response_bytes:
                bits |= STS_DATA_AVAIL
            else:
                burst = 0
        return bytes([bits]) + burst.to_bytes(2, "little") + b"\x04"

    def _write_sts(self, data: bytes) -> None:
        assert len(data) == 1, "STS written with more than its status byte"
        bits = data[0]
        assert bits in (STS_COMMAND_READY, STS_GO, STS_RESPONSE_RETRY), f"STS write {bits:#x}"
        if bits == STS_COMMAND_READY:
            if self.grant_ready:
                self.state = "ready"
                self._ready_wait = self.ready_after_reads
                self.received = bytearray()
                self.response = b""
        elif bits == STS_GO:
            assert self.state == "reception" and not self._expects_more(), "tpmGo too early"
            command = bytes(self.received)
            self.commands.append(command)
            self.response = self.respond(command)
            self.state = "execution"
        else:
            assert self.state == "completion", "responseRetry with no response"
            self.offset = 0
