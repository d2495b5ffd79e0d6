"""A `Transport` seen by tpm2-tss as a TCTI: tpm2-pytss's Python TCTI around edgekeeper's bus code.

ESAPI hands a whole command to `do_transmit` and asks for the response in `do_receive`, on the
thread that called ESAPI (the daemon's executor), waiting forever unless the transport stops it: so
every exchange gets a deadline here. A Python exception does not reach ESAPI's caller (tpm2-pytss
reports any of them as a TCTI failure), so a transport error is kept in `last_error`, for the
connection's messages, and ESAPI gets the TCTI return code that says what kind of failure it was.
"""

from __future__ import annotations

import time

from tpm2_pytss.constants import TSS2_RC
from tpm2_pytss.TCTI import PyTCTI
from tpm2_pytss.TSS2_Exception import TSS2_Exception

from firmware.transports.errors import TransportError, TransportProtocolError, TransportTimeout
from firmware.transports.transport import Transport

MAX_RESPONSE = 4096  # TPM2_PT_MAX_RESPONSE_SIZE of PC Client TPMs
_MAGIC = b"EKTCTI\0\0"


class TransportTcti(PyTCTI):  # type: ignore[misc]  # tpm2-pytss ships no type information
    """tpm2-tss's view of `transport`; `command_timeout` bounds each command's round trip."""

    def __init__(self, transport: Transport, command_timeout: float) -> None:
        super().__init__(max_size=MAX_RESPONSE, magic=_MAGIC)
        self.transport = transport
        self.command_timeout = command_timeout
        self.last_error: TransportError | None = None
        self._command: bytes | None = None

    def do_transmit(self, command: bytes) -> None:
        self._command = bytes(command)

    def do_receive(self, timeout: int) -> bytes:
        command, self._command = self._command, None
        if command is None:
            raise TSS2_Exception(TSS2_RC.TCTI_RC_BAD_SEQUENCE)
        try:
            return self.transport.exchange(command, time.monotonic() + self.command_timeout)
        except TransportError as failed:
            self.last_error = failed
            raise TSS2_Exception(_rc_of(failed)) from failed

    def do_finalize(self) -> None:
        self.transport.close()


def _rc_of(failed: TransportError) -> int:
    if isinstance(failed, TransportTimeout):
        return int(TSS2_RC.TCTI_RC_TRY_AGAIN)
    if isinstance(failed, TransportProtocolError):
        return int(TSS2_RC.TCTI_RC_MALFORMED_RESPONSE)
    return int(TSS2_RC.TCTI_RC_IO_ERROR)
