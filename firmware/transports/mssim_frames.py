"""The TPM simulator's command framing (mssim, TpmTcpProtocol), sans-IO.

A command goes out as `u32 TPM_SEND_COMMAND (8), u8 locality, u32 length, command`; its response
comes back as `u32 length, response, u32 0`. `u32 TPM_SESSION_END (20)` ends a session and has no
answer. All numbers are big-endian. Microsoft's simulator and swtpm speak it on their command port,
wolfTPM's UART firmware on a serial line; edgekeeper speaks it over any byte stream.

`ResponseDecoder` is fed bytes as they arrive, in chunks of any size, and hands back the response
once its length, body and trailer are in. It checks what a TPM response must look like (a length a
TPM can answer, a TPM 2.0 response tag, a header size equal to the frame length, a zero trailer) and
raises `TransportProtocolError` as soon as a byte breaks it: garbage on the line is found at its
first impossible byte, not after waiting for a length it made up.

`PROBE` and `ProbeScanner` put a line back in step after a failure: the probe is a command every
TPM 2.0 refuses, unchanged, with a 10-byte answer; the scanner finds that answer in whatever the
line carries, and what came before it is stale.
"""

from __future__ import annotations

import struct

from firmware.transports.errors import TransportProtocolError

TPM_SEND_COMMAND = 8
TPM_SESSION_END = 20
SESSION_END = struct.pack(">I", TPM_SESSION_END)

TPM_HEADER_SIZE = 10
MAX_COMMAND = 4096
MAX_RESPONSE = 4096

_COMMAND_HEADER = struct.Struct(">IBI")
_U32 = struct.Struct(">I")
_TPM_HEADER = struct.Struct(">HI")
# TPM_ST_NO_SESSIONS, TPM_ST_SESSIONS, and TPM_ST_RSP_COMMAND (a TPM's answer to a malformed tag)
_RESPONSE_TAGS = frozenset({0x8001, 0x8002, 0x00C4})
_TRAILER = b"\0\0\0\0"

_HINT = (
    "the serial line carries something other than TPM simulator frames: check the baud rate, "
    "that nothing else writes to the line, and the firmware bridging the TPM"
)


def encode_command(command: bytes, locality: int = 0) -> bytes:
    """The frame that sends `command` to the TPM at `locality` (0 to 4)."""
    return _COMMAND_HEADER.pack(TPM_SEND_COMMAND, locality, len(command)) + command


# A command header with the tag TPM_ST_NULL (and TPM2_GetRandom's code). A TPM validates the tag
# before anything else (TPM 2.0 Part 1, "Command Header Validation") and answers TPM_RC_BAD_TAG
# without touching its state; one in failure mode answers TPM_RC_FAILURE. Either answer is 10 bytes.
PROBE = encode_command(bytes.fromhex("8000 0000000a 0000017b"))
_PROBE_ANSWERS = tuple(
    _U32.pack(TPM_HEADER_SIZE) + tag + _U32.pack(TPM_HEADER_SIZE) + _U32.pack(rc) + _TRAILER
    for tag in (b"\x80\x01", b"\x00\xc4")  # TPM_ST_NO_SESSIONS, TPM_ST_RSP_COMMAND
    for rc in (0x01E, 0x101)  # TPM_RC_BAD_TAG, TPM_RC_FAILURE
)
_PROBE_ANSWER_SIZE = len(_PROBE_ANSWERS[0])


class ProbeScanner:
    """Finds the answer to `PROBE` in the bytes a line carries, in chunks of any size.

    A TPM answers commands in the order it got them, so whatever it still owed for an earlier
    command arrives before the probe's answer: everything up to that answer is stale.
    """

    def __init__(self) -> None:
        self._tail = b""
        self.found = False

    def feed(self, data: bytes) -> bool:
        """Take the next bytes; True once the probe's answer has gone by."""
        if not self.found:
            window = self._tail + data
            self.found = any(answer in window for answer in _PROBE_ANSWERS)
            self._tail = window[1 - _PROBE_ANSWER_SIZE :]
        return self.found


class ResponseDecoder:
    """Collects one response frame; `feed` returns the response once the whole frame arrived.

    `wanted` says how many bytes complete the frame as far as is known (the length first, then
    the rest), so a reader can ask for exactly that and never read past the frame. Bytes fed after
    the frame is complete are kept in `surplus`, not decoded.
    """

    def __init__(self, where: str = "the TPM", max_response: int = MAX_RESPONSE) -> None:
        self.where = where
        self.max_response = max_response
        self._buffer = bytearray()
        self._length: int | None = None
        self._response: bytes | None = None
        self.surplus = b""

    @property
    def received(self) -> int:
        """Bytes of this frame that arrived so far."""
        return len(self._buffer)

    @property
    def wanted(self) -> int:
        """Bytes still missing to complete what is known of the frame; 0 once complete."""
        if self._response is not None:
            return 0
        if self._length is None:
            return _U32.size - len(self._buffer)
        return _U32.size + self._length + len(_TRAILER) - len(self._buffer)

    def feed(self, data: bytes) -> bytes | None:
        """Take the next bytes; the response when they complete the frame, else None."""
        if self._response is not None:
            self.surplus += data
            return None
        # take the length, check it, then the rest: never more than the frame (the rest is surplus)
        response = None
        take = min(len(data), self.wanted)
        while take:
            self._buffer += data[:take]
            data = data[take:]
            response = self._check()
            take = min(len(data), self.wanted)
        if response is None:
            return None
        self._response = response
        self.surplus = bytes(data)
        return response

    def _check(self) -> bytes | None:
        """Raise at the first byte no response frame can have; the response once complete."""
        buffer = self._buffer
        if self._length is None and len(buffer) >= _U32.size:
            (length,) = _U32.unpack_from(buffer)
            if not TPM_HEADER_SIZE <= length <= self.max_response:
                raise self._error(
                    f"announced a response of {length} bytes; a TPM answers "
                    f"{TPM_HEADER_SIZE} to {self.max_response}"
                )
            self._length = length
        if self._length is None:
            return None
        body = bytes(buffer[_U32.size : _U32.size + self._length])
        if len(body) >= 2 and (tag := int.from_bytes(body[:2], "big")) not in _RESPONSE_TAGS:
            raise self._error(f"answered a response with tag {tag:#06x}, which no TPM 2.0 uses")
        if len(body) >= _TPM_HEADER.size:
            _tag, size = _TPM_HEADER.unpack_from(body)
            if size != self._length:
                raise self._error(
                    f"framed a response of {self._length} bytes whose header says {size}"
                )
        trailer = bytes(buffer[_U32.size + self._length :])
        if trailer != _TRAILER[: len(trailer)]:
            raise self._error(
                f"ended a response frame with {trailer.hex()} where the protocol has 00000000"
            )
        return body if len(trailer) == len(_TRAILER) else None

    def _error(self, what: str) -> TransportProtocolError:
        return TransportProtocolError(f"{self.where} {what}", hint=_HINT)
