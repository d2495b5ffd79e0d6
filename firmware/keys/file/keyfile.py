"""On-disk layout of the file backend: one 0600 file per key in a 0700 directory, atomic writes.

A key file holds one header line naming the key kind (`ec-p256\\n`), then the key material:
PKCS#8 DER for key pairs, the raw secret for symmetric keys. File names are validated key names plus
`.key`, so no name can reach outside the directory.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from firmware.errors import StateError
from firmware.keys.backend import KeyKind
from firmware.keys.errors import KeyNotFound

SUFFIX = ".key"


class KeyDirectory:
    """The directory of key files; creates it 0700 and refuses one others can read."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def ensure(self) -> None:
        try:
            self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
            mode = stat.S_IMODE(self.path.stat().st_mode)
            if mode != 0o700:
                os.chmod(self.path, 0o700)
        except OSError as err:
            raise StateError(
                f"key directory {self.path} cannot be created or secured: {err.strerror}",
                hint="check that the data dir is writable by edgekeeper ([keys.file] dir)",
            ) from err

    def file_for(self, key_id: str) -> Path:
        return self.path / f"{key_id}{SUFFIX}"

    def read(self, key_id: str) -> tuple[KeyKind, bytes]:
        path = self.file_for(key_id)
        try:
            blob = path.read_bytes()
        except FileNotFoundError:
            raise KeyNotFound(
                f"no key {key_id!r} in the file backend ({self.path})",
                hint="create or import the key first",
            ) from None
        except OSError as err:
            raise StateError(f"key file {path} cannot be read: {err.strerror}") from err
        header, sep, material = blob.partition(b"\n")
        try:
            kind = KeyKind(header.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            kind = None
        if not sep or kind is None:
            raise StateError(
                f"key file {path} is not an edgekeeper key file",
                hint="restore it from a backup or delete it and create the key again",
            )
        return kind, material

    def write(self, key_id: str, kind: KeyKind, material: bytes) -> None:
        from firmware.store.atomic import write_atomic

        self.ensure()
        blob = kind.value.encode("ascii") + b"\n" + material
        write_atomic(self.file_for(key_id), blob, mode=0o600)

    def delete(self, key_id: str) -> None:
        path = self.file_for(key_id)
        try:
            path.unlink()
        except FileNotFoundError:
            raise KeyNotFound(f"no key {key_id!r} in the file backend ({self.path})") from None
        except OSError as err:
            raise StateError(f"key file {path} cannot be deleted: {err.strerror}") from err
        dir_fd = os.open(self.path, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def key_ids(self) -> list[str]:
        if not self.path.is_dir():
            return []
        return sorted(
            entry.name[: -len(SUFFIX)]
            for entry in self.path.iterdir()
            if entry.name.endswith(SUFFIX) and not entry.name.startswith(".")
        )
