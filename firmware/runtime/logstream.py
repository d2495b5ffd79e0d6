"""Sans-IO demuxer and framer for Docker's multiplexed log and attach streams.

Without a TTY the engine frames each chunk with an 8-byte header: one byte naming the stream
(0 stdin, 1 stdout, 2 stderr), three zero bytes, then the payload length as a big-endian u32.
Feed the demuxer bytes as they arrive; it hands back complete frames and keeps any partial one.
`frame` encodes one frame the same way (the management API answers logs in this framing, as
aziot-edged does, because edgeAgent parses it).
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from firmware.errors import EdgekeeperError

_HEADER = struct.Struct(">BxxxI")
MAX_FRAME = 16 * 1024 * 1024


class LogStreamError(EdgekeeperError):
    """The engine sent a log stream that does not follow the framing."""

    http_status = 502


class Stream(enum.IntEnum):
    STDIN = 0
    STDOUT = 1
    STDERR = 2


@dataclass(frozen=True)
class LogFrame:
    stream: Stream
    data: bytes


class LogDemuxer:
    """Turns the engine's framed byte stream into `LogFrame`s."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[LogFrame]:
        self._buffer += data
        frames: list[LogFrame] = []
        while len(self._buffer) >= _HEADER.size:
            kind, size = _HEADER.unpack_from(self._buffer)
            if kind not in (0, 1, 2):
                raise LogStreamError(f"log stream frame names unknown stream {kind}")
            if size > MAX_FRAME:
                raise LogStreamError(f"log stream frame of {size} bytes is over {MAX_FRAME}")
            end = _HEADER.size + size
            if len(self._buffer) < end:
                break
            frames.append(LogFrame(Stream(kind), bytes(self._buffer[_HEADER.size : end])))
            del self._buffer[:end]
        return frames

    @property
    def pending(self) -> int:
        """Bytes held back as an incomplete frame."""
        return len(self._buffer)


def frame(stream: Stream, data: bytes) -> bytes:
    """Encode one frame the way the engine does."""
    return _HEADER.pack(int(stream), len(data)) + data
