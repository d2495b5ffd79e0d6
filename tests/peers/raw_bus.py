"""A raw bus-socket client for tests: I2C_RDWR and SPI_IOC_MESSAGE requests written out byte by
byte as the design note ("Simulated buses") says, independent of firmware/transports, so that the
simulators and the host drivers are checked against each other's reading of the wire format.
Also a few TPM commands the tests send."""

from __future__ import annotations

import socket
import struct
from pathlib import Path

GET_RANDOM_8 = bytes.fromhex("80010000000c0000017b0008")  # TPM2_GetRandom(8), no sessions
STARTUP_CLEAR = bytes.fromhex("80010000000c000001440000")
TPM_RC_INITIALIZE = 0x100
I2C_M_RD = 0x0001


class RawBus:
    """A client of one bus socket: requests written byte by byte as the design note says."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(5.0)
        self.sock.connect(str(path))

    def close(self) -> None:
        self.sock.close()

    def request(self, payload: bytes, reply_size: int) -> tuple[int, bytes]:
        self.sock.sendall(payload)
        status = self._receive(1)[0]
        return status, (self._receive(reply_size) if status == 0 else b"")

    def _receive(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self.sock.recv(size - len(data))
            assert chunk, "the simulator closed the connection"
            data += chunk
        return data

    # I²C: one I2C_RDWR, messages as (addr, b"write bytes") or (addr, read_length).

    def i2c(self, *messages: tuple[int, bytes | int]) -> tuple[int, bytes]:
        payload = bytes([len(messages)])
        reply_size = 0
        for addr, body in messages:
            if isinstance(body, int):
                payload += struct.pack(">HHH", addr, I2C_M_RD, body)
                reply_size += body
            else:
                payload += struct.pack(">HHH", addr, 0, len(body)) + body
        return self.request(payload, reply_size)

    # SPI: one SPI_IOC_MESSAGE, transfers as (tx bytes, cs_change).

    def spi(self, *transfers: tuple[bytes, bool]) -> tuple[int, bytes]:
        payload = bytes([len(transfers)])
        for tx, cs_change in transfers:
            payload += struct.pack(">HBI", len(tx), int(cs_change), 10_000_000) + tx
        return self.request(payload, sum(len(tx) for tx, _ in transfers))
