"""A TPM behind a serial line, for tests: TPM simulator frames on a pty (or a TCP port, or an
RFC 2217 server), relayed to a real swtpm, with the faults of a line and a microcontroller.

The far end of the pty (or of each accepted TCP connection) is read as a stream of mssim frames; the
command of each TPM_SEND_COMMAND goes to swtpm as a raw command (`SwtpmRaw`, a connection per
command) and its response is framed back. TPM_SESSION_END ends a TCP connection (on the pty it
means nothing). Faults apply to the next command and can be set from the test's thread at any time:

    garbage(data)        `data` goes out before the next response
    drop_bytes(n)        the last n bytes of the next response frame are lost
    slow(seconds)        the next response goes out that much later
    silent()             the next command is dropped: no answer at all
    reset_mid_command()  the TPM is reset (swtpm CMD_INIT) before the next command reaches it
    trickle(interval)    the next response goes out one byte at a time, `interval` apart

`commands` lists every TPM command that arrived, in order (the transport's probes included).
"""

from __future__ import annotations

import os
import select
import socket
import struct
import threading
import tty
from dataclasses import dataclass

import serial
from serial.rfc2217 import PortManager

from firmware.transports.mssim_frames import TPM_SEND_COMMAND, TPM_SESSION_END
from tests.peers.sim import Swtpm
from tests.peers.swtpm_raw import SwtpmRaw

_JOIN_TIMEOUT_S = 5.0
_COMMAND_HEADER = struct.Struct(">IBI")


@dataclass
class _Faults:
    garbage: bytes = b""
    drop: int = 0
    delay: float = 0.0
    silent: bool = False
    reset: bool = False
    trickle: float | None = None


class SerialTpm:
    """swtpm behind a pty (`over="pty"`, URL mssim+serial://), a TCP port (`"tcp"`,
    mssim+socket://) or an RFC 2217 server (`"rfc2217"`, mssim+rfc2217://)."""

    def __init__(self, tpm: Swtpm, *, over: str = "pty", baud: int = 115200) -> None:
        if over not in ("pty", "tcp", "rfc2217"):
            raise ValueError(f"over={over!r}: a SerialTpm is served over pty, tcp or rfc2217")
        self._tpm = SwtpmRaw(tpm.host, tpm.port, tpm.ctrl_port)
        self.over = over
        self.baud = baud
        self.url = ""
        self.commands: list[bytes] = []
        self._lock = threading.Lock()
        self._faults = _Faults()
        self._stopping = threading.Event()
        self._wake_r, self._wake_w = -1, -1
        self._master = self._slave = -1
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None

    # -- faults, from any thread -------------------------------------------------------------

    def garbage(self, data: bytes) -> None:
        with self._lock:
            self._faults.garbage = data

    def drop_bytes(self, count: int) -> None:
        with self._lock:
            self._faults.drop = count

    def slow(self, seconds: float) -> None:
        with self._lock:
            self._faults.delay = seconds

    def silent(self) -> None:
        with self._lock:
            self._faults.silent = True

    def reset_mid_command(self) -> None:
        with self._lock:
            self._faults.reset = True

    def trickle(self, interval: float) -> None:
        with self._lock:
            self._faults.trickle = interval

    # -- life --------------------------------------------------------------------------------

    def start(self) -> None:
        self._wake_r, self._wake_w = os.pipe()
        if self.over == "pty":
            self._master, self._slave = os.openpty()
            tty.setraw(self._slave)
            # the slave stays open here too, so the master never reads EIO between clients
            self.url = f"mssim+serial://{os.ttyname(self._slave)}?baud={self.baud}"
        else:
            self._listener = socket.create_server(("127.0.0.1", 0))
            address = f"127.0.0.1:{self._listener.getsockname()[1]}"
            self.url = f"mssim+socket://{address}"
            if self.over == "rfc2217":
                self.url = f"mssim+rfc2217://{address}?baud={self.baud}"
        self._thread = threading.Thread(target=self._serve, name=f"serial-tpm-{self.over}")
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._wake_w >= 0:
            os.write(self._wake_w, b"x")
        if self._thread is not None:
            self._thread.join(_JOIN_TIMEOUT_S)
            assert not self._thread.is_alive(), "the serial TPM simulator did not stop"
            self._thread = None
        for fd in (self._master, self._slave, self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)
        self._master = self._slave = self._wake_r = self._wake_w = -1
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    # -- the serving thread ------------------------------------------------------------------

    def _serve(self) -> None:
        if self._listener is None:
            self._serve_line(_Wire(self._master))
            return
        while not self._stopping.is_set():
            ready, _, _ = select.select([self._listener, self._wake_r], [], [])
            if self._listener not in ready:
                continue
            connection, _ = self._listener.accept()
            with connection:
                wire = _Wire(connection.fileno())
                if self.over == "rfc2217":
                    wire = _TelnetWire(connection.fileno())
                self._serve_line(wire)

    def _serve_line(self, wire: _Wire) -> None:
        """Answer the frames arriving on `wire` until stopped (or, on TCP, the session ends)."""
        buffer = bytearray()
        while not self._stopping.is_set():
            ready, _, _ = select.select([wire.fd, self._wake_r], [], [])
            if wire.fd not in ready:
                continue
            try:
                data = os.read(wire.fd, 4096)
            except OSError:
                return
            if not data:
                return
            buffer += wire.incoming(data)
            while len(buffer) >= 4:
                (code,) = struct.unpack_from(">I", buffer)
                if code == TPM_SESSION_END:
                    del buffer[:4]
                    if self.over != "pty":
                        return
                    continue
                if code != TPM_SEND_COMMAND:
                    buffer.clear()  # not a frame: what a microcontroller's parser would drop
                    break
                if len(buffer) < _COMMAND_HEADER.size:
                    break
                _code, _locality, length = _COMMAND_HEADER.unpack_from(buffer)
                end = _COMMAND_HEADER.size + length
                if len(buffer) < end:
                    break
                command = bytes(buffer[_COMMAND_HEADER.size : end])
                del buffer[:end]
                if not self._answer(wire, command):
                    return

    def _answer(self, wire: _Wire, command: bytes) -> bool:
        """Relay one command and send its response with the faults due; False when `wire` died."""
        with self._lock:
            faults, self._faults = self._faults, _Faults()
        self.commands.append(command)
        if faults.silent:
            return True
        if faults.reset:
            self._tpm.reset()
        response = self._tpm.execute(command)
        frame = struct.pack(">I", len(response)) + response + b"\0\0\0\0"
        if faults.drop:
            frame = frame[: -faults.drop]
        frame = faults.garbage + frame
        if faults.delay and self._stopping.wait(faults.delay):
            return False
        try:
            if faults.trickle is None:
                wire.send(frame)
                return True
            for index in range(len(frame)):
                if index and self._stopping.wait(faults.trickle):
                    return False
                wire.send(frame[index : index + 1])
        except OSError:  # the client went away (on TCP, after giving up on this answer)
            return False
        return True


class _Wire:
    """The bytes of a line as they are: a pty's master, a TCP connection."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def incoming(self, data: bytes) -> bytes:
        return data

    def send(self, data: bytes) -> None:
        while data:
            data = data[os.write(self.fd, data) :]


class _TelnetWire(_Wire):
    """A line behind an RFC 2217 server: Telnet negotiation and escapes, by pyserial's own server
    side (its settings go to a loop:// port, there being no real line to set)."""

    def __init__(self, fd: int) -> None:
        super().__init__(fd)
        self._manager = PortManager(serial.serial_for_url("loop://"), self)

    def write(self, data: bytes) -> None:
        """Where the port manager sends its negotiation."""
        _Wire.send(self, data)

    def incoming(self, data: bytes) -> bytes:
        return b"".join(self._manager.filter(data))

    def send(self, data: bytes) -> None:
        _Wire.send(self, b"".join(self._manager.escape(data)))
