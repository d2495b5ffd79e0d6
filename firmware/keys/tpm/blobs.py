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
from dataclasses import dataclass
from pathlib import Path

from firmware.keys.backend import KeyKind
from firmware.keys.keyfiles import KeyFiles
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
    """The TPM backend's key files (`KeyFiles`), each holding one `KeyBlob`."""

    def __init__(self, path: Path) -> None:
        self.files = KeyFiles(path, suffix=SUFFIX, backend="tpm", setting="[paths] data_dir")
        self.path = self.files.path

    def ensure(self) -> None:
        self.files.ensure()

    def file_for(self, key_id: str) -> Path:
        return self.files.file_for(key_id)

    def exists(self, key_id: str) -> bool:
        return self.files.exists(key_id)

    def read(self, key_id: str) -> KeyBlob:
        return KeyBlob.decode(self.files.read(key_id), self.file_for(key_id))

    def write(self, key_id: str, blob: KeyBlob) -> None:
        self.files.write(key_id, blob.encode())

    def delete(self, key_id: str) -> None:
        self.files.delete(key_id)

    def key_ids(self) -> list[str]:
        return self.files.key_ids()
