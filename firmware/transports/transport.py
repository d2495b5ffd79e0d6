"""The `Transport` interface: a TPM reached by edgekeeper's own code, one command at a time."""

from __future__ import annotations

from typing import Protocol


class Transport(Protocol):
    """One whole TPM command in, its whole response out.

    `where` names the device for messages ("the TIS-I²C TPM at 0x2e on /dev/i2c-1"). `exchange`
    blocks (call it from the executor) and never waits past `deadline`, a `time.monotonic()`
    instant: it raises `TransportTimeout` then. Retries the bus allows (a NAK, a bad checksum, a
    lost frame) happen inside it, within the deadline; what they cannot cure is a
    `TransportError`. `close` is idempotent.
    """

    where: str

    def exchange(self, command: bytes, deadline: float) -> bytes: ...

    def close(self) -> None: ...
