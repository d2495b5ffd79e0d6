"""`KeyFiles`: a private directory with one file per key, the storage of the file and TPM backends.

The directory is created 0700 (and made so if it was not), and refused if someone other than root
and the daemon's user could change it (`OwnDirectory`); each file is a validated key name plus
the backend's suffix, so no name reaches outside it; files are read without following a link,
written atomically with mode 0600 and deletes are made durable with a directory fsync. What a file
holds is the backend's business.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from firmware.errors import StateError
from firmware.keys.errors import KeyNotFound
from firmware.store.atomic import fsync_dir, write_atomic
from firmware.store.directory import OwnDirectory
from firmware.store.files import read_own_file

DIR_MODE = 0o700
FILE_MODE = 0o600


class KeyFiles:
    """Key files `<key_id><suffix>` under `path`; `backend` and `setting` name them in errors."""

    def __init__(self, path: Path, *, suffix: str, backend: str, setting: str) -> None:
        self.path = Path(path)
        self.suffix = suffix
        self._backend = backend
        self._setting = setting

    def ensure(self) -> None:
        what = f"{self._backend} key directory"
        OwnDirectory(self.path, what, self._setting, DIR_MODE).ensure()
        try:
            if stat.S_IMODE(self.path.stat().st_mode) != DIR_MODE:
                os.chmod(self.path, DIR_MODE)
        except OSError as err:
            raise StateError(
                f"{what} {self.path} cannot be made {DIR_MODE:o}: {err.strerror}",
                hint=f"chmod {DIR_MODE:o} {self.path}, or set {self._setting} elsewhere",
            ) from err

    def file_for(self, key_id: str) -> Path:
        return self.path / f"{key_id}{self.suffix}"

    def exists(self, key_id: str) -> bool:
        return self.file_for(key_id).exists()

    def read(self, key_id: str) -> bytes:
        path = self.file_for(key_id)
        try:
            return read_own_file(path)
        except FileNotFoundError:
            raise KeyNotFound(
                f"no key {key_id!r} in the {self._backend} backend ({self.path})",
                hint="create or import the key first",
            ) from None
        except OSError as err:
            raise StateError(f"key file {path} cannot be read: {err.strerror}") from err

    def write(self, key_id: str, data: bytes) -> None:
        self.ensure()
        write_atomic(self.file_for(key_id), data, mode=FILE_MODE)

    def delete(self, key_id: str) -> None:
        path = self.file_for(key_id)
        try:
            path.unlink()
        except FileNotFoundError:
            raise KeyNotFound(
                f"no key {key_id!r} in the {self._backend} backend ({self.path})"
            ) from None
        except OSError as err:
            raise StateError(f"key file {path} cannot be deleted: {err.strerror}") from err
        fsync_dir(self.path)

    def key_ids(self) -> list[str]:
        try:
            names = sorted(entry.name for entry in self.path.iterdir())
        except FileNotFoundError:
            return []
        except OSError as err:
            raise StateError(
                f"{self._backend} key directory {self.path} cannot be read: {err.strerror}"
            ) from err
        return [
            name[: -len(self.suffix)]
            for name in names
            if name.endswith(self.suffix) and not name.startswith(".")
        ]
