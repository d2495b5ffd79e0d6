"""A bus reached over a unix socket: one request, one reply, in the order the kernel's ioctl would.

Simulated I²C and SPI buses (tests/peers/, a board farm's remote bus bridge) serve the same
transactions the kernel's `I2C_RDWR` and `SPI_IOC_MESSAGE` carry, framed by the bus module that
speaks them. Every reply starts with one errno byte: 0 when the transaction went through, else the
errno the kernel would have returned (ENXIO for a NAK, EIO for a bus error); then the bytes read.
"""

from __future__ import annotations

import os
import socket
import time

from firmware.transports.errors import BusFault, TransportTimeout


class BusSocket:
    """A connected bus socket at `path`; blocking, each call bounded by its deadline."""

    def __init__(self, path: str, where: str) -> None:
        self.path = path
        self.where = where
        self._sock: socket.socket | None = None

    def transact(self, request: bytes, reply_size: int, deadline: float) -> bytes:
        """Send `request`, return the `reply_size` bytes read; `OSError(errno)` for a refused
        transaction (a NAK, a bus error), as the kernel's ioctl raises it."""
        sock = self._connected(deadline)
        try:
            _set_timeout(sock, deadline, self.where)
            sock.sendall(request)
            status = self._receive(sock, 1, deadline)[0]
            if status:
                raise OSError(status, os.strerror(status))
            return self._receive(sock, reply_size, deadline)
        except (TimeoutError, ConnectionError) as exc:
            self.close()
            if isinstance(exc, TimeoutError):
                raise TransportTimeout(f"{self.where} did not answer in time") from None
            raise BusFault(
                f"{self.where}: the bus at {self.path} closed the connection",
                hint="check that the bus bridge or simulator is running",
            ) from None

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _connected(self, deadline: float) -> socket.socket:
        if self._sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                _set_timeout(sock, deadline, self.where)
                sock.connect(self.path)
            except OSError as exc:
                sock.close()
                raise BusFault(
                    f"{self.where}: cannot connect to the bus socket {self.path}: "
                    f"{exc.strerror or exc}",
                    hint="check that the bus bridge or simulator is running",
                ) from None
            self._sock = sock
        return self._sock

    def _receive(self, sock: socket.socket, size: int, deadline: float) -> bytes:
        data = bytearray()
        while len(data) < size:
            _set_timeout(sock, deadline, self.where)
            chunk = sock.recv(size - len(data))
            if not chunk:
                raise ConnectionResetError
            data += chunk
        return bytes(data)


def _set_timeout(sock: socket.socket, deadline: float, where: str) -> None:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError(where)
    sock.settimeout(left)
