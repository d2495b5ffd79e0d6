"""The TPM's FIFO interface (TCG PC Client PTP, "TIS"), register by register, shared by the I²C and
SPI simulators; and the faults a test injects into them.

`TisDevice` is the device side of the PTP FIFO protocol at TIS offsets (ACCESS 0x00, INT_ENABLE
0x08, INTF_CAPABILITY 0x14, STS 0x18, DATA_FIFO 0x24, INTERFACE_ID 0x30, DID_VID 0xF00, RID 0xF04):
localities (requestUse, activeLocality, pendingRequest), the command states Idle → Ready
(commandReady) → Reception (FIFO writes, Expect until the header's size is in) → Execution (tpmGo,
the command goes to the backend, a swtpm) → Completion (dataAvail until the last response byte is
read; responseRetry reads it again; commandReady goes back to Ready). It is strict as the spec
allows: FIFO writes outside Ready/Reception and past the command's size are dropped, tpmGo before
the whole command is ignored, FIFO reads without dataAvail give 0xFF, a locality that is not
active reads STS and the FIFO as all ones and cannot write them, a write of more than one ACCESS
or STS command bit at once is ignored. stsValid is set in every state but Idle (the simulated TPM
settles at once). Seize and interrupts are not modelled (read 0, ignored).

A TPM reset injected at tpmGo (`Faults.reset_mid_command`) loses the command: swtpm gets TPM_Init
and the interface comes back as after power-on (no active locality, Idle, checksum off); the next
command answers TPM_RC_INITIALIZE until a Startup. A backend that fails (swtpm gone) leaves the TPM
executing for ever, like a hung chip; commandReady abandons the command.

The bus fronts (tests/peers/i2c_tpm.py, spi_tpm.py) call `read`/`write` from their one serving
thread; the backend runs on a worker thread so that STS stays readable while the TPM executes.
`Faults` is shared with the test thread, which may change it at any time.
"""

from __future__ import annotations

import concurrent.futures
import enum
import errno
import threading
import time
from typing import Protocol

# ACCESS bits
ACCESS_VALID = 0x80
ACCESS_ACTIVE = 0x20
ACCESS_PENDING = 0x04
ACCESS_REQUEST_USE = 0x02
ACCESS_ESTABLISHMENT = 0x01  # 1: no DRTM sequence established
# STS bits
STS_FAMILY_TPM2 = 0x04000000  # tpmFamily (27:26) = 01
STS_VALID = 0x80
STS_COMMAND_READY = 0x40
STS_GO = 0x20
STS_DATA_AVAIL = 0x10
STS_EXPECT = 0x08
STS_SELF_TEST_DONE = 0x04
STS_RESPONSE_RETRY = 0x02
# TIS register offsets (within a locality's 4 KiB page)
REG_ACCESS = 0x00
REG_INT_ENABLE = 0x08
REG_INTF_CAPABILITY = 0x14
REG_STS = 0x18
REG_DATA_FIFO = 0x24
REG_XDATA_FIFO = 0x80
REG_DID_VID = 0xF00
REG_RID = 0xF04

LOCALITIES = 5
NO_DATA = 0xFF  # what a FIFO read gives when there is nothing to read
MAX_COMMAND = 4096
# Transfer size 64 bytes (10:9 = 11), interface version TPM 2.0 (30:28 = 011).
INTF_CAPABILITY = 0x30000600
DID_VID = 0x0014_ED6E  # an invented vendor 0xED6E and device 0x0014 (no real TPM)
RID = 0x01


class Backend(Protocol):
    """The TPM behind the interface (tests/peers/swtpm_raw.py `SwtpmRaw`)."""

    def execute(self, command: bytes) -> bytes: ...

    def reset(self) -> None: ...


class Faults:
    """Faults to inject, changed by the test thread at any time; consumed by the device thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.clear()

    def clear(self) -> None:
        with self._lock:
            self._failures: list[int] = []
            self._stuck_until: float | None = None  # monotonic; inf = forever
            self._bad_checksums = 0
            self._reset_armed = False
            self._slow_s = 0.0
            self._wait_states = 0
            self._guard_s: float | None = None

    def nak(self, count: int, kind: str = "address") -> None:
        """The next `count` transactions fail: ENXIO (address NAK) or EREMOTEIO (data NAK)."""
        codes = {"address": errno.ENXIO, "data": errno.EREMOTEIO}
        if kind not in codes:
            raise ValueError(f"NAK kind {kind!r} is not one of {sorted(codes)}")
        code = codes[kind]
        with self._lock:
            self._failures += [code] * count

    def bus_error(self, count: int) -> None:
        """The next `count` transactions fail with EIO."""
        with self._lock:
            self._failures += [errno.EIO] * count

    def stuck_burst(self, seconds: float | None) -> None:
        """burstCount reads 0 for `seconds` from now (None: until cleared; 0: not stuck)."""
        with self._lock:
            self._stuck_until = float("inf") if seconds is None else time.monotonic() + seconds

    def bad_checksum(self, count: int) -> None:
        """The next `count` reads of DATA_CSUM (I²C) give a wrong checksum."""
        with self._lock:
            self._bad_checksums += count

    def reset_mid_command(self) -> None:
        """The next tpmGo resets the TPM (swtpm CMD_INIT) instead of running the command."""
        with self._lock:
            self._reset_armed = True

    def slow(self, seconds: float) -> None:
        """dataAvail comes `seconds` after tpmGo at the earliest (0: as soon as the TPM answers)."""
        with self._lock:
            self._slow_s = seconds

    def wait_states(self, count: int) -> None:
        """(SPI) `count` wait-state bytes between each frame's header and its data."""
        with self._lock:
            self._wait_states = count

    def guard_time(self, seconds: float | None) -> None:
        """(I²C) NAK a transaction that starts sooner than `seconds` after the previous one
        ended (None: no guard time enforced, the default)."""
        with self._lock:
            self._guard_s = seconds

    # The device's side.

    def take_failure(self) -> int:
        with self._lock:
            return self._failures.pop(0) if self._failures else 0

    def burst_stuck(self) -> bool:
        with self._lock:
            return self._stuck_until is not None and time.monotonic() < self._stuck_until

    def take_bad_checksum(self) -> bool:
        with self._lock:
            if self._bad_checksums:
                self._bad_checksums -= 1
                return True
            return False

    def take_reset(self) -> bool:
        with self._lock:
            armed, self._reset_armed = self._reset_armed, False
            return armed

    @property
    def slow_s(self) -> float:
        with self._lock:
            return self._slow_s

    @property
    def wait_state_count(self) -> int:
        with self._lock:
            return self._wait_states

    @property
    def guard_s(self) -> float | None:
        with self._lock:
            return self._guard_s


def crc16_kermit(data: bytes) -> int:
    """CRC-16/KERMIT (CCITT polynomial, reflected, init 0): the I²C interface's DATA_CSUM."""
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
    return crc


class State(enum.Enum):
    """The PTP's command states of the FIFO interface."""

    IDLE = "idle"
    READY = "ready"
    RECEPTION = "reception"
    EXECUTION = "execution"
    COMPLETION = "completion"


class TisDevice:
    """The FIFO interface of one TPM: `read`/`write` at TIS offsets of a locality."""

    def __init__(self, backend: Backend, faults: Faults, burst: int = 32) -> None:
        self.backend = backend
        self.faults = faults
        self.burst = burst
        self.checksum_enabled = False  # the I²C interface's DATA_CSUM_ENABLE
        self.commands: list[bytes] = []  # every command passed to the backend, for tests
        self._state = State.IDLE
        self._active: int | None = None
        self._requests: set[int] = set()
        self._pending: concurrent.futures.Future[bytes] | None = None
        self._ready_at = 0.0
        self._command = bytearray()
        self._response = b""
        self._read_offset = 0
        self._worker: concurrent.futures.ThreadPoolExecutor | None = None  # made when needed
        self._reset_interface()

    def close(self) -> None:
        """Stop the backend worker (a command in flight is left to finish on its own); the device
        can be used again, with a new worker."""
        if self._worker is not None:
            self._worker.shutdown(wait=False, cancel_futures=True)
            self._worker = None

    # Register access.

    def read(self, locality: int, offset: int, size: int) -> bytes:
        self._collect()
        if _is_fifo(offset):
            return bytes(self._fifo_read(locality) for _ in range(size))
        values: dict[int, int] = {}
        out = bytearray()
        for address in range(offset, offset + size):
            base = address & ~3
            if base not in values:
                values[base] = self._register(locality, base)
            out.append((values[base] >> (8 * (address & 3))) & 0xFF)
        return bytes(out)

    def write(self, locality: int, offset: int, data: bytes) -> None:
        self._collect()
        if _is_fifo(offset):
            for byte in data:
                self._fifo_write(locality, byte)
        elif offset == REG_ACCESS and data:
            self._write_access(locality, data[0])
        elif offset == REG_STS and data:
            self._write_sts(locality, data[0])
        elif REG_INT_ENABLE <= offset < REG_INT_ENABLE + 4:
            pass  # interrupts are not modelled: INT_ENABLE stays 0
        # every other register is read-only: the write is ignored

    def checksum(self) -> int:
        """CRC-16/KERMIT of the last FIFO data: the command written so far (Reception,
        Execution) or the response read so far (Completion); 0 when the checksum is disabled."""
        self._collect()
        if not self.checksum_enabled:
            return 0
        if self._state == State.COMPLETION:
            return crc16_kermit(self._response[: self._read_offset])
        if self._state in (State.RECEPTION, State.EXECUTION):
            return crc16_kermit(bytes(self._command))
        return crc16_kermit(b"")

    def accepting(self, locality: int) -> bool:
        """The FIFO takes command bytes from `locality` now (Ready, or Reception with Expect)."""
        self._collect()
        if locality != self._active:
            return False
        return self._state == State.READY or (self._state == State.RECEPTION and self._expect())

    def burst_count(self) -> int:
        """What STS.burstCount shows now to the active locality."""
        if self.faults.burst_stuck():
            return 0
        if self._state in (State.READY, State.RECEPTION):
            return self.burst
        if self._state == State.COMPLETION:
            return min(self.burst, len(self._response) - self._read_offset)
        return 0

    # Registers.

    def _register(self, locality: int, base: int) -> int:
        if base == REG_ACCESS:
            return self._access(locality)
        if base == REG_STS:
            return self._sts() if locality == self._active else 0xFFFFFFFF
        if base == REG_INTF_CAPABILITY:
            return INTF_CAPABILITY
        if base == REG_DID_VID:
            return DID_VID
        if base == REG_RID:
            return RID
        return 0  # INT_ENABLE, INT_VECTOR, INT_STATUS, INTERFACE_ID (FIFO, TPM 2.0), unknown

    def _access(self, locality: int) -> int:
        value = ACCESS_VALID | ACCESS_ESTABLISHMENT
        if locality == self._active:
            value |= ACCESS_ACTIVE
        if locality in self._requests:
            value |= ACCESS_REQUEST_USE
        if self._requests - {locality}:
            value |= ACCESS_PENDING
        return value

    def _sts(self) -> int:
        value = STS_FAMILY_TPM2 | STS_SELF_TEST_DONE | self.burst_count() << 8
        if self._state != State.IDLE:
            value |= STS_VALID
        if self._state == State.READY:
            value |= STS_COMMAND_READY
        if self._state == State.RECEPTION and self._expect():
            value |= STS_EXPECT
        if self._state == State.COMPLETION and self._read_offset < len(self._response):
            value |= STS_DATA_AVAIL
        return value

    def _write_access(self, locality: int, value: int) -> None:
        if value == ACCESS_REQUEST_USE:
            if self._active is None:
                self._activate(locality)
            elif self._active != locality:
                self._requests.add(locality)
        elif value == ACCESS_ACTIVE:
            if self._active == locality:
                self._activate(max(self._requests) if self._requests else None)
            else:
                self._requests.discard(locality)
        # beenSeized, Seize (not modelled) and several bits at once: ignored

    def _activate(self, locality: int | None) -> None:
        if locality is not None:
            self._requests.discard(locality)
        self._active = locality
        self._go_idle()

    def _write_sts(self, locality: int, value: int) -> None:
        if locality != self._active:
            return
        if value == STS_COMMAND_READY:
            if self._state == State.EXECUTION:
                self._pending = None  # cancelled: the answer, when it comes, is dropped
            self._state = State.READY
            self._command = bytearray()
            self._response = b""
            self._read_offset = 0
        elif value == STS_GO:
            if self._state == State.RECEPTION and not self._expect():
                self._execute(bytes(self._command))
        elif value == STS_RESPONSE_RETRY and self._state == State.COMPLETION:
            self._read_offset = 0
        # several bits at once, or none of them: ignored

    # The FIFO.

    def _fifo_write(self, locality: int, byte: int) -> None:
        if locality != self._active:
            return
        if self._state == State.READY:
            self._state = State.RECEPTION
        if self._state == State.RECEPTION and self._expect():
            self._command.append(byte)

    def _fifo_read(self, locality: int) -> int:
        if locality != self._active or self._state != State.COMPLETION:
            return NO_DATA
        if self._read_offset >= len(self._response):
            return NO_DATA
        byte = self._response[self._read_offset]
        self._read_offset += 1
        return byte

    def _expect(self) -> bool:
        """Expect: the TPM wants more command bytes (it knows the size once 6 bytes are in)."""
        if len(self._command) < 6:
            return True
        size = int.from_bytes(self._command[2:6], "big")
        return len(self._command) < min(max(size, 6), MAX_COMMAND)

    # Execution.

    def _execute(self, command: bytes) -> None:
        if self.faults.take_reset():
            # TPM_Init: the command is lost, the interface comes back as after power-on.
            self._backend_worker().submit(self.backend.reset).result()
            self._reset_interface()
            return
        self.commands.append(command)
        self._state = State.EXECUTION
        self._pending = self._backend_worker().submit(self.backend.execute, command)
        self._ready_at = time.monotonic() + self.faults.slow_s

    def _backend_worker(self) -> concurrent.futures.ThreadPoolExecutor:
        """One thread, so that the TPM runs commands (and resets) in the order they came."""
        if self._worker is None:
            self._worker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="tis-tpm")
        return self._worker

    def _collect(self) -> None:
        """Take the backend's answer once it is there and the slow-TPM delay has passed. A
        backend that fails leaves the TPM executing forever (a hung TPM)."""
        pending = self._pending
        if self._state != State.EXECUTION or pending is None or not pending.done():
            return
        if time.monotonic() < self._ready_at or pending.exception() is not None:
            return
        self._pending = None
        self._response = pending.result()
        self._read_offset = 0
        self._state = State.COMPLETION

    def _go_idle(self) -> None:
        self._state = State.IDLE
        self._pending = None
        self._command = bytearray()
        self._response = b""
        self._read_offset = 0

    def _reset_interface(self) -> None:
        self._active = None
        self._requests = set()
        self._pending = None
        self._ready_at = 0.0
        self.checksum_enabled = False
        self._go_idle()


def _is_fifo(offset: int) -> bool:
    return (
        REG_DATA_FIFO <= offset < REG_DATA_FIFO + 4 or REG_XDATA_FIFO <= offset < REG_XDATA_FIFO + 4
    )
