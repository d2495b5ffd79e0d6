"""TPM key blobs on disk: each key's TPM2B_PUBLIC and TPM2B_PRIVATE, one 0600 file per key.

The private blob is encrypted by the storage root key, so it is useless off this TPM; it is still
kept 0600 in a 0700 directory. A file (`<key_id>.tpmkey`) is a small JSON document written
atomically: the key kind, where it came from, the name of the parent SRK, and the two blobs in
base64. Loading the blobs under the SRK again is how keys survive a TPM reset or a reboot; saved
contexts are never used.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from firmware.errors import StateError
from firmware.keys.backend import KeyKind
from firmware.keys.errors import KeyNotFound
from firmware.store.atomic import fsync_dir, write_atomic
from firmware.store.errors import CorruptState

SUFFIX = ".tpmkey"
FORMAT = "edgekeeper-tpm-key/1"


@dataclass(frozen=True)
class KeyBlob:
    """One key as the TPM gave it to us: marshalled TPM2B_PUBLIC and TPM2B_PRIVATE."""

    kind: KeyKind
    public: bytes
    private: bytes
    parent: bytes  # the TPM name of the SRK the key was created under
    origin: str  # "tpm" (generated inside the TPM) or "imported"

    def encode(self) -> bytes:
        document = {
            "format": FORMAT,
            "kind": self.kind.value,
            "origin": self.origin,
            "parent": self.parent.hex(),
            "public": base64.b64encode(self.public).decode("ascii"),
            "private": base64.b64encode(self.private).decode("ascii"),
        }
        return (json.dumps(document, indent=1) + "\n").encode("ascii")

    @classmethod
    def decode(cls, data: bytes, where: Path) -> KeyBlob:
        """Parse a key file's bytes; raise `CorruptState` naming `where` when they are not one."""
        try:
            document = json.loads(data)
            if document["format"] != FORMAT:
                raise ValueError(f"format {document['format']!r}")
            return cls(
                kind=KeyKind(document["kind"]),
                public=base64.b64decode(document["public"], validate=True),
                private=base64.b64decode(document["private"], validate=True),
                parent=bytes.fromhex(document["parent"]),
                origin=str(document["origin"]),
            )
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise CorruptState(
                f"TPM key file {where} is not an edgekeeper TPM key ({exc})",
                hint="restore it from a backup, or delete it and create the key again",
            ) from exc


class KeyBlobStore:
    """The directory of TPM key files; created 0700. Names are validated key names."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def ensure(self) -> None:
        try:
            self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
            if stat.S_IMODE(self.path.stat().st_mode) != 0o700:
                os.chmod(self.path, 0o700)
        except OSError as exc:
            raise StateError(
                f"TPM key directory {self.path} cannot be created or secured: {exc.strerror}",
                hint="check that the data dir is writable by edgekeeper ([paths] data_dir)",
            ) from exc

    def file_for(self, key_id: str) -> Path:
        return self.path / f"{key_id}{SUFFIX}"

    def read(self, key_id: str) -> KeyBlob:
        path = self.file_for(key_id)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise KeyNotFound(
                f"no key {key_id!r} in the tpm backend ({self.path})",
                hint="create or import the key first",
            ) from None
        except OSError as exc:
            raise StateError(f"TPM key file {path} cannot be read: {exc.strerror}") from exc
        return KeyBlob.decode(data, path)

    def exists(self, key_id: str) -> bool:
        return self.file_for(key_id).exists()

    def write(self, key_id: str, blob: KeyBlob) -> None:
        write_atomic(self.file_for(key_id), blob.encode(), mode=0o600)

    def delete(self, key_id: str) -> None:
        path = self.file_for(key_id)
        try:
            path.unlink()
        except FileNotFoundError:
            raise KeyNotFound(f"no key {key_id!r} in the tpm backend ({self.path})") from None
        except OSError as exc:
            raise StateError(f"TPM key file {path} cannot be deleted: {exc.strerror}") from exc
        fsync_dir(self.path)

    def key_ids(self) -> list[str]:
        try:
            names = sorted(entry.name for entry in self.path.iterdir())
        except OSError as exc:
            raise StateError(
                f"TPM key directory {self.path} cannot be read: {exc.strerror}"
            ) from exc
        return [
            name[: -len(SUFFIX)]
            for name in names
            if name.endswith(SUFFIX) and not name.startswith(".")
        ]
