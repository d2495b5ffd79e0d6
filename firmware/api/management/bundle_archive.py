"""The support bundle's archive: named parts deflated into a zip in memory, every text redacted.

`BundleArchive` takes the parts one at a time (`add_text`, `add_json`) and compresses each as it
comes, so building a bundle holds at most one uncompressed part besides the compressed archive;
`finish()` answers the zip's bytes. Every text passes `firmware.redaction.redact` on its way in, the
last line of defence behind the parts' own care (redacted config, no keys in any document).
`LogTail` bounds one module's log: it keeps the newest bytes within a cap and drops the oldest
whole lines, so a module that wrote gigabytes costs no more than the cap.

No I/O: parts come in as values, the archive goes out as bytes. Adding a part compresses it, so
callers on the event loop run `BundleArchive`'s methods through the executor.
"""

from __future__ import annotations

import io
import json
import time
from typing import TYPE_CHECKING

from firmware.redaction import redact

if TYPE_CHECKING:
    import zipfile

_FILE_MODE = 0o644 << 16  # a regular file readable by all, in the zip's external attributes
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can carry


class LogTail:
    """The newest bytes of one log stream, at most `cap` of them."""

    def __init__(self, cap: int) -> None:
        self.cap = max(cap, 0)
        self._dropped = 0
        self._kept = bytearray()

    def feed(self, data: bytes) -> None:
        self._kept += data
        # Trim in batches: cutting the front of a bytearray moves all that follows.
        if len(self._kept) > self.cap + max(self.cap, 64 * 1024):
            self._trim()

    def result(self) -> tuple[bytes, int]:
        """(the kept bytes, how many earlier bytes were left out); once some were left out, the
        kept bytes begin with a whole line."""
        self._trim()
        if not self._dropped:
            return bytes(self._kept), 0
        end = self._kept.find(b"\n")
        start = end + 1 if end >= 0 else len(self._kept)
        return bytes(self._kept[start:]), self._dropped + start

    def _trim(self) -> None:
        excess = len(self._kept) - self.cap
        if excess > 0:
            del self._kept[:excess]
            self._dropped += excess


class BundleArchive:
    """A zip archive made in memory, part by part; blocking (compression) in every method."""

    def __init__(self, made_at: float) -> None:
        # Deferred: zipfile pulls in shutil, bz2 and lzma, which the daemon's start-up avoids.
        import zipfile

        self._zipfile = zipfile
        moment = time.gmtime(made_at)
        stamp = (
            moment.tm_year,
            moment.tm_mon,
            moment.tm_mday,
            moment.tm_hour,
            moment.tm_min,
            moment.tm_sec,
        )
        self._stamp = max(stamp, _ZIP_EPOCH)  # a board without a clock may think it is 1970
        self._buffer = io.BytesIO()
        self._archive: zipfile.ZipFile | None = zipfile.ZipFile(self._buffer, "w")
        self.names: list[str] = []

    def add_text(self, name: str, text: str) -> None:
        """Part `name` holding `text`, redacted, as UTF-8."""
        archive = self._open()
        entry = self._zipfile.ZipInfo(name, date_time=self._stamp)
        entry.compress_type = self._zipfile.ZIP_DEFLATED
        entry.external_attr = _FILE_MODE
        archive.writestr(entry, redact(text).encode())
        self.names.append(name)

    def add_json(self, name: str, document: object) -> None:
        """Part `name` holding `document` as indented JSON (redacted like any text)."""
        self.add_text(name, json.dumps(document, indent=2, default=str) + "\n")

    def finish(self) -> bytes:
        """The zip's bytes; the archive takes no more parts."""
        self._open().close()
        self._archive = None
        return self._buffer.getvalue()

    def _open(self) -> zipfile.ZipFile:
        if self._archive is None:
            raise ValueError("the support bundle archive is finished")
        return self._archive
