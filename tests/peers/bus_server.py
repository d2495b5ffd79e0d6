"""A bus socket served from a thread: the listening unix socket the I²C and SPI simulators share.

One client at a time, one request after another (the wire format is the bus's own, see
firmware/transports/bus_socket.py and the design note "Simulated buses"): the bus front reads a
whole request with `read_exact` and returns the reply. A client that goes away is forgotten and the
next one is accepted. Every blocking call is bounded so that `stop()` ends the thread promptly.
An exception in the device is a simulator bug: it is kept in `errors`, printed, and the client gets
EIO (and the connection closes) so its test fails instead of hanging.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import threading
import traceback
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from tests.peers import tis_device as tis
from tests.peers.swtpm_raw import SwtpmRaw

POLL_S = 0.05  # how often a blocked accept/recv looks at the stop flag
STOP_TIMEOUT_S = 5.0

ReadExact = Callable[[int], bytes]


class ClientGone(Exception):
    """The client closed its connection (or the server is stopping)."""


class BusFront(Protocol):
    def handle(self, read_exact: ReadExact) -> bytes:
        """Read one request, carry it out on the device, return the reply."""

    def disconnected(self) -> None:
        """The client went away: drop any half-done bus state (e.g. SPI chip select)."""


class BusServer:
    """Serves `front` on a unix socket at `path` from a daemon thread."""

    def __init__(self, path: Path, front: BusFront, name: str) -> None:
        self.path = Path(path)
        self.front = front
        self.name = name
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(os.fspath(self.path))
        listener.listen(4)
        listener.settimeout(POLL_S)
        self._listener = listener
        self._stop.clear()
        self._thread = threading.Thread(target=self._serve, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT_S)
            if self._thread.is_alive():
                raise RuntimeError(f"{self.name} did not stop within {STOP_TIMEOUT_S} s")
            self._thread = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def _serve(self) -> None:
        assert self._listener is not None
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            with client:
                client.settimeout(POLL_S)
                self._converse(client)
            self.front.disconnected()

    def _converse(self, client: socket.socket) -> None:
        def read_exact(size: int) -> bytes:
            data = bytearray()
            while len(data) < size:
                if self._stop.is_set():
                    raise ClientGone
                try:
                    chunk = client.recv(size - len(data))
                except TimeoutError:
                    continue
                except OSError:
                    raise ClientGone from None
                if not chunk:
                    raise ClientGone
                data += chunk
            return bytes(data)

        while not self._stop.is_set():
            try:
                reply = self.front.handle(read_exact)
            except ClientGone:
                return
            except Exception as error:  # a simulator bug: fail the transaction, drop the client
                self.errors.append(error)
                traceback.print_exc()
                with contextlib.suppress(OSError):
                    client.sendall(bytes([errno.EIO]))
                return
            try:
                client.sendall(reply)
            except OSError:
                return


class BusTpm(ABC):
    """What the I²C and SPI simulators share: a TIS device executing on swtpm at host:port, its
    `faults`, and the bus server that serves the subclass's `BusFront` methods at `path`."""

    def __init__(
        self,
        path: Path,
        swtpm_host: str,
        swtpm_port: int,
        ctrl_port: int | None,
        burst: int,
        name: str,
    ) -> None:
        self.path = Path(path)
        self.faults = tis.Faults()
        self.device = tis.TisDevice(SwtpmRaw(swtpm_host, swtpm_port, ctrl_port), self.faults, burst)
        self._server = BusServer(self.path, self, f"{name} {self.path.name}")

    @abstractmethod
    def handle(self, read_exact: ReadExact) -> bytes:
        """Read one request, carry it out on the device, return the reply."""

    @abstractmethod
    def disconnected(self) -> None:
        """The client went away: drop any half-done bus state."""

    @property
    def errors(self) -> list[BaseException]:
        """Simulator bugs met while serving (each failed its bus request with EIO)."""
        return self._server.errors

    def start(self) -> None:
        self._server.start()

    def stop(self) -> None:
        self._server.stop()
        self.device.close()
