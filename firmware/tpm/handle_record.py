"""A persistent TPM handle remembered in a small JSON file, written atomically.

Used for the things that must survive a power cut between two TPM steps: which persistent handle
is the parent of the stored keys, and which of the two DPS auth key slots is the current one.
A record that cannot be read as one is an error naming the file, never silently dropped.
"""

from __future__ import annotations

import json
from pathlib import Path

from firmware.store.atomic import write_atomic
from firmware.store.errors import CorruptState, StateReadError
from firmware.store.files import read_own_file

PERSISTENT_FIRST = 0x81000000
PERSISTENT_LAST = 0x81FFFFFF


class HandleRecord:
    """The handle kept in `path` (`{"handle": "0x81000002"}`); `what` names it in errors."""

    def __init__(self, path: Path, what: str) -> None:
        self.path = Path(path)
        self.what = what

    def read(self) -> int | None:
        """The recorded handle, or None when nothing was recorded yet."""
        try:
            data = read_own_file(self.path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StateReadError(f"{self.what} {self.path} cannot be read: {exc.strerror}") from exc
        try:
            handle = int(json.loads(data)["handle"], 16)
        except (ValueError, KeyError, TypeError) as exc:
            raise self._corrupt(f"not a handle record ({exc})") from exc
        if not PERSISTENT_FIRST <= handle <= PERSISTENT_LAST:
            raise self._corrupt(f"0x{handle:08x} is not a persistent handle")
        return handle

    def write(self, handle: int) -> None:
        """Record `handle` durably (temp file, fsync, rename, fsync of the directory)."""
        document = json.dumps({"handle": f"0x{handle:08x}"}) + "\n"
        write_atomic(self.path, document.encode("ascii"))

    def _corrupt(self, why: str) -> CorruptState:
        return CorruptState(
            f"{self.what} {self.path} is damaged: {why}",
            hint="restore it from a backup, or delete it and edgekeeper decides again",
        )
