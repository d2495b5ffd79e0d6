"""TPM commands over a serial line, in the TPM simulator's frames (`mssim_frames`).

For a TPM hosted by a microcontroller (wolfTPM's UART firmware speaks these frames, 8N1, no flow
control) or a line a board farm bridges to the network, opened through pyserial:

    mssim+serial:///dev/ttyUSB0?baud=115200   a local serial line (baud defaults to 115200)
    mssim+socket://host:port                  pyserial's socket://: raw TCP (swtpm's port, ser2net)
    mssim+rfc2217://host:port?baud=115200     pyserial's rfc2217://: a remote serial port

Every wait ends at the command's deadline, counted in wall-clock time for the whole exchange, so a
TPM that sends its answer a byte at a time cannot stretch it. (Some waits are pyserial's own: a TCP
connect gives up after 5 s, its socket:// and rfc2217:// sleep 0.3 s when closed, an RFC 2217 port
cannot bound a write and is read in 20 ms slices, so it may overrun a deadline by one.)

Getting back in step. A byte stream has no message boundaries: after a timeout the TPM may still
be working on the abandoned command, and after garbage or a lost byte the rest of a response may
still be on its way. So:
  - bytes waiting before a command is sent cannot be its answer: they are read and discarded;
  - after any failure, and on a line just opened, the transport is out of step, and before the next
    command it sends `PROBE` (a command every TPM refuses, unchanged, with a 10-byte answer) and
    discards everything up to and including that answer, within the next command's deadline. A TPM
    answers in order, so what it owed for the abandoned command has arrived by then.
The same holds on a socket URL: the connection is kept (a board farm's TCP bridge keeps the serial
line behind it as it was anyway, and pyserial's socket:// sleeps 0.3 s in every close), and opened
again only when the far end closed it.

Sending a command twice. Once any byte of a command was written, it is never sent again: the TPM
may have run it, and a second run is not the same as one (an NV counter incremented twice, a
second key created, a policy session's nonce rolled on). A timeout or garbage after the write is
the caller's to handle, who knows the command. (A command cut off in the middle of its write leaves
the far end inside a frame; the probes that follow fill it up, and the line is back in step once
the far end has answered or dropped it.) The one resend is of a command not yet written:
when the line turns out dead before the write (the far end closed the connection since the last
command, e.g. a simulator restarted, or the device went away), it is opened again and the command
sent on the new one. `close` ends the session with TPM_SESSION_END.
"""

from __future__ import annotations

import select
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from firmware.transports.address import DeviceUrl
from firmware.transports.errors import BusFault, TransportError, TransportTimeout
from firmware.transports.mssim_frames import (
    MAX_COMMAND,
    PROBE,
    SESSION_END,
    TPM_HEADER_SIZE,
    ProbeScanner,
    ResponseDecoder,
    encode_command,
)
from firmware.transports.transport import Transport

DEFAULT_BAUD = 115200
# Reads on a port without a file descriptor to wait on (RFC 2217) wait in slices this long.
_READ_SLICE_S = 0.02
_DISCARD_CHUNK = 4096
_SESSION_END_TIMEOUT_S = 0.1


class _Port(Protocol):
    """What the transport uses of a pyserial port."""

    write_timeout: float | None

    def read(self, size: int) -> bytes: ...

    def write(self, data: bytes) -> int | None: ...

    def close(self) -> None: ...

    def fileno(self) -> int: ...


@dataclass(frozen=True)
class _Line:
    """How one URL scheme reaches its line."""

    target: Callable[[DeviceUrl], str]  # the pyserial URL
    where: Callable[[DeviceUrl, int], str]
    waits_on_fd: bool  # select() on the port's descriptor (else read in slices)


_LINES: Mapping[str, _Line] = {
    "mssim+serial": _Line(
        target=lambda url: url.path,
        where=lambda url, baud: f"the TPM behind {url.path} ({baud} baud)",
        waits_on_fd=True,
    ),
    "mssim+socket": _Line(
        target=lambda url: f"socket://{url.endpoint}",
        where=lambda url, _baud: f"the TPM behind {url.endpoint} (TPM frames over TCP)",
        waits_on_fd=True,
    ),
    "mssim+rfc2217": _Line(
        target=lambda url: f"rfc2217://{url.endpoint}",
        where=lambda url, baud: f"the TPM behind the RFC 2217 port {url.endpoint} ({baud} baud)",
        waits_on_fd=False,
    ),
}

_OPEN_HINT = "check the device URL, that the line exists and that no other program holds it"
_LINE_HINT = "check the cable or the connection, and that the TPM's firmware is running"


def open_serial_frames(url: DeviceUrl) -> Transport:
    """Open the line `url` names (`mssim+serial`, `mssim+socket`, `mssim+rfc2217`)."""
    line = _LINES[url.scheme]
    baud = url.param_int("baud", DEFAULT_BAUD, lo=50, hi=12_000_000)
    return SerialFramesTransport(line, line.target(url), baud, line.where(url, baud))


class SerialFramesTransport:
    """A TPM on a line opened through pyserial; one exchange at a time (a lock serialises them)."""

    def __init__(self, line: _Line, target: str, baud: int, where: str) -> None:
        self.where = where
        self._line = line
        self._target = target
        self._baud = baud
        self._lock = threading.Lock()
        self._closed = False
        self._in_step = False
        self._port: _Port | None = self._open()

    def exchange(self, command: bytes, deadline: float) -> bytes:
        if not TPM_HEADER_SIZE <= len(command) <= MAX_COMMAND:
            raise TransportError(
                f"{self.where}: a command of {len(command)} bytes cannot be sent",
                hint=f"a TPM command has {TPM_HEADER_SIZE} to {MAX_COMMAND} bytes",
            )
        with self._lock:
            if self._closed:
                raise TransportError(f"{self.where} was closed", hint="open the TPM again")
            try:
                port = self._ready_port(deadline)
                if not self._in_step:
                    self._resync(port, deadline)
                self._in_step = False
                self._write(port, encode_command(command), deadline)
                response = self._read_response(port, deadline)
            except TransportError:
                self._in_step = False
                raise
            self._in_step = True
            return response

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._end_session()
            self._drop_port()

    def _open(self) -> _Port:
        import serial  # pyserial: only loaded when a TPM is reached over a serial line

        self._in_step = False
        try:
            port: _Port = serial.serial_for_url(
                self._target,
                baudrate=self._baud,
                timeout=0 if self._line.waits_on_fd else _READ_SLICE_S,
                exclusive=True,
            )
        except (OSError, ValueError) as error:
            raise TransportError(
                f"{self.where} cannot be opened: {error}", hint=_OPEN_HINT
            ) from None
        return port

    def _ready_port(self, deadline: float) -> _Port:
        """The open port, with nothing waiting on it; opened (again) when the line is dead.

        Nothing of the command was written yet, so opening again and going on is safe.
        """
        if self._port is None:
            self._port = self._open()
        try:
            self._discard_input(self._port, deadline)
        except OSError:
            self._drop_port()
            self._port = self._open()
            try:
                self._discard_input(self._port, deadline)
            except OSError as error:
                raise self._lost(error) from None
        return self._port

    def _discard_input(self, port: _Port, deadline: float) -> None:
        """Read and drop what is waiting: it came before the command, so it cannot answer it.

        `OSError` when the line is dead (pyserial's error for a closed socket or a gone device).
        """
        while port.read(_DISCARD_CHUNK):
            if time.monotonic() >= deadline:
                raise TransportTimeout(
                    f"{self.where} keeps sending unasked: the line never fell quiet",
                    hint=_LINE_HINT,
                )

    def _resync(self, port: _Port, deadline: float) -> None:
        """Send `PROBE` and drop everything up to its answer: the line is in step after it."""
        self._write(port, PROBE, deadline)
        scanner = ProbeScanner()
        while not scanner.feed(self._read_some(port, _DISCARD_CHUNK, deadline)):
            if time.monotonic() >= deadline:
                raise TransportTimeout(
                    f"{self.where} did not answer the probe that puts the line back in step "
                    "after an earlier failure",
                    hint=_LINE_HINT,
                )
        self._in_step = True

    def _write(self, port: _Port, data: bytes, deadline: float) -> None:
        if self._line.waits_on_fd:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TransportTimeout(f"{self.where}: no time left to send the command")
            port.write_timeout = left
        try:
            port.write(data)
        except OSError as error:
            if time.monotonic() >= deadline:  # pyserial's write timeout
                raise TransportTimeout(
                    f"{self.where} did not take the command in time", hint=_LINE_HINT
                ) from None
            raise self._lost(error) from None

    def _read_response(self, port: _Port, deadline: float) -> bytes:
        decoder = ResponseDecoder(self.where)
        while True:
            response = decoder.feed(self._read_some(port, decoder.wanted, deadline))
            if response is not None:
                return response
            if time.monotonic() >= deadline:
                if decoder.received:
                    raise TransportTimeout(
                        f"{self.where} sent {decoder.received} bytes of a response frame, "
                        "then nothing more in time",
                        hint=_LINE_HINT,
                    )
                raise TransportTimeout(f"{self.where} did not answer in time", hint=_LINE_HINT)

    def _read_some(self, port: _Port, size: int, deadline: float) -> bytes:
        """Up to `size` bytes as soon as any arrive; b"" once the deadline has passed."""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return b""
            if self._line.waits_on_fd and not _readable(port, left):
                return b""
            chunk = self._read_now(port, size)
            if chunk:
                return chunk

    def _read_now(self, port: _Port, size: int) -> bytes:
        try:
            return port.read(size)
        except OSError as error:
            raise self._lost(error) from None

    def _lost(self, error: OSError) -> BusFault:
        return BusFault(f"{self.where}: the line failed: {error}", hint=_LINE_HINT)

    def _end_session(self) -> None:
        """Tell the far end this session is over (it has no answer); best effort."""
        if self._port is None:
            return
        try:
            if self._line.waits_on_fd:
                self._port.write_timeout = _SESSION_END_TIMEOUT_S
            self._port.write(SESSION_END)
        except OSError:
            pass

    def _drop_port(self) -> None:
        if self._port is not None:
            port, self._port = self._port, None
            port.close()


def _readable(port: _Port, timeout: float) -> bool:
    ready, _, _ = select.select([port.fileno()], [], [], timeout)
    return bool(ready)
