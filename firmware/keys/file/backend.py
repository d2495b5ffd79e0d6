"""`FileBackend`: the `KeyBackend` over the key directory, with loaded keys cached in memory."""

from __future__ import annotations

import hmac
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from firmware.keys import software as operations
from firmware.keys.backend import (
    BackendInfo,
    Capability,
    KeyBackend,
    KeyInfo,
    KeyKind,
    SignAlgorithm,
)
from firmware.keys.errors import KeyKindMismatch
from firmware.keys.file import keyfile, material

if TYPE_CHECKING:
    from firmware.keys.software import PrivateKey

    # A key read from its file: a symmetric key's secret, or a key pair's private key object.
    LoadedKey = tuple[KeyKind, bytes | PrivateKey]


class FileBackend(KeyBackend):
    """Software keys in files. Thread-safe: the executor may call it from several threads."""

    name = "file"
    exports_keys = True

    def __init__(self, directory: Path) -> None:
        self._files = keyfile.key_files(directory)
        self._files.ensure()
        self._lock = threading.Lock()
        self._loaded: dict[str, LoadedKey] = {}

    def describe(self) -> BackendInfo:
        return BackendInfo(
            name=self.name,
            device=str(self._files.path),
            kinds=frozenset(KeyKind),
            capabilities=frozenset(Capability),
        )

    def create(self, key_id: str, kind: KeyKind) -> KeyInfo:
        with self._lock:
            existing = self._existing_kind(key_id)
            if existing is None:
                self._files.write(key_id, keyfile.encode(kind, material.generate(kind)))
            else:
                self._check_kind(key_id, existing, kind)
        return KeyInfo(key_id=key_id, kind=kind, backend=self.name)

    def import_key(self, key_id: str, kind: KeyKind, key_material: bytes) -> KeyInfo:
        stored = material.check_import(key_id, kind, key_material)
        with self._lock:
            self._files.write(key_id, keyfile.encode(kind, stored))
            self._loaded.pop(key_id, None)
        return KeyInfo(key_id=key_id, kind=kind, backend=self.name)

    def export_key(self, key_id: str) -> tuple[KeyKind, bytes]:
        """The key file's kind and material: PKCS#8 DER for pairs, the raw secret otherwise."""
        return self._read(key_id)

    def info(self, key_id: str) -> KeyInfo:
        # The key file's kind, without parsing the key (that needs cryptography).
        kind, _ = self._read(key_id)
        return KeyInfo(key_id=key_id, kind=kind, backend=self.name)

    def list_keys(self) -> list[KeyInfo]:
        infos = []
        for key_id in self._files.key_ids():
            kind, _ = self._read(key_id)
            infos.append(KeyInfo(key_id=key_id, kind=kind, backend=self.name))
        return infos

    def public_key(self, key_id: str) -> bytes:
        kind, key = self._load(key_id)
        if isinstance(key, bytes):
            raise KeyKindMismatch(
                f"key {key_id!r} is a symmetric {kind.value} key and has no public key"
            )
        return material.public_der(key)

    def sign(self, key_id: str, algorithm: SignAlgorithm, data: bytes) -> bytes:
        kind, key = self._load(key_id)
        operations.check_algorithm(key_id, kind, algorithm)
        if isinstance(key, bytes):  # an HMAC key: the algorithm fits the kind
            return operations.hmac_sha256(key, data)
        return operations.sign_asymmetric(key, algorithm, data)

    def verify(self, key_id: str, algorithm: SignAlgorithm, data: bytes, signature: bytes) -> bool:
        kind, key = self._load(key_id)
        operations.check_algorithm(key_id, kind, algorithm)
        if isinstance(key, bytes):  # an HMAC key: the algorithm fits the kind
            return hmac.compare_digest(operations.hmac_sha256(key, data), signature)
        return operations.verify_asymmetric(key.public_key(), algorithm, data, signature)

    def encrypt(self, key_id: str, iv: bytes, aad: bytes, plaintext: bytes) -> bytes:
        return operations.gcm_encrypt(key_id, self._aes_secret(key_id), iv, aad, plaintext)

    def decrypt(self, key_id: str, iv: bytes, aad: bytes, ciphertext: bytes) -> bytes:
        return operations.gcm_decrypt(key_id, self._aes_secret(key_id), iv, aad, ciphertext)

    def delete(self, key_id: str) -> None:
        with self._lock:
            self._loaded.pop(key_id, None)
            self._files.delete(key_id)

    def close(self) -> None:
        with self._lock:
            self._loaded.clear()

    def _load(self, key_id: str) -> LoadedKey:
        with self._lock:
            cached = self._loaded.get(key_id)
            if cached is not None:
                return cached
            kind, stored = self._read(key_id)
            key = operations.load_pkcs8(key_id, kind, stored) if kind.asymmetric else stored
            self._loaded[key_id] = (kind, key)
            return kind, key

    def _aes_secret(self, key_id: str) -> bytes:
        kind, key = self._load(key_id)
        if kind is not KeyKind.AES_256 or not isinstance(key, bytes):
            raise operations.not_aes(key_id, kind)
        return key

    def _existing_kind(self, key_id: str) -> KeyKind | None:
        if not self._files.exists(key_id):
            return None
        kind, _ = self._read(key_id)
        return kind

    def _read(self, key_id: str) -> tuple[KeyKind, bytes]:
        return keyfile.decode(self._files.file_for(key_id), self._files.read(key_id))

    @staticmethod
    def _check_kind(key_id: str, existing: KeyKind, wanted: KeyKind) -> None:
        if existing is not wanted:
            raise KeyKindMismatch(
                f"key {key_id!r} exists as a {existing.value} key, not {wanted.value}",
                hint="pick another name, or delete the existing key first",
            )
