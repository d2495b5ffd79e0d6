"""On-disk format of the file backend's keys (kept by `KeyFiles`: 0600 files in a 0700 directory).

A key file holds one header line naming the key kind (`ec-p256\\n`), then the key material:
PKCS#8 DER for key pairs, the raw secret for symmetric keys. File names are validated key names plus
`.key`, so no name can reach outside the directory.
"""

from __future__ import annotations

from pathlib import Path

from firmware.errors import StateError
from firmware.keys.backend import KeyKind
from firmware.keys.keyfiles import KeyFiles

SUFFIX = ".key"


def key_files(path: Path) -> KeyFiles:
    """The file backend's directory of key files."""
    return KeyFiles(path, suffix=SUFFIX, backend="file", setting="[keys.file] dir")


def encode(kind: KeyKind, material: bytes) -> bytes:
    return kind.value.encode("ascii") + b"\n" + material


def decode(path: Path, blob: bytes) -> tuple[KeyKind, bytes]:
    """The kind and material of key file `path` holding `blob`; StateError if it is not one."""
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
