"""The `KeyBackend` interface every key store implements (file, PKCS#11, TPM).

Provider style: every operation has a default that raises `NotSupported`, and a backend says what it
offers in `describe()`. Methods are blocking (they talk to files, tokens and TPMs); the key service
calls them through the daemon's bounded executor, never on the event loop. Backends see plain key
ids (already validated names); only the key service deals in opaque handles.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from firmware.errors import NotSupported


class KeyKind(enum.Enum):
    """What a key is: asymmetric pairs and symmetric secrets the service manages."""

    EC_P256 = "ec-p256"
    RSA_2048 = "rsa-2048"
    HMAC_SHA256 = "hmac-sha256"
    AES_256 = "aes-256"

    @property
    def asymmetric(self) -> bool:
        return self in (KeyKind.EC_P256, KeyKind.RSA_2048)


class SignAlgorithm(enum.Enum):
    """Signature and MAC algorithms; each fits exactly one key kind family."""

    ECDSA_SHA256 = "ecdsa-sha256"
    # ECDSA over a SHA-256 digest the caller computed (`data` is the 32-byte digest): what a TLS
    # handshake asks of a client key.
    ECDSA_SHA256_DIGEST = "ecdsa-sha256-digest"
    RSA_PKCS1_SHA256 = "rsa-pkcs1-sha256"
    RSA_PSS_SHA256 = "rsa-pss-sha256"
    HMAC_SHA256 = "hmac-sha256"


class Capability(enum.Enum):
    """Operations a backend can offer; `describe()` lists the ones it does."""

    CREATE = "create"
    IMPORT = "import"
    PUBLIC_KEY = "public-key"
    SIGN = "sign"
    VERIFY = "verify"
    ENCRYPT = "encrypt"
    DELETE = "delete"
    LIST = "list"


@dataclass(frozen=True)
class BackendInfo:
    """What a backend is and what it can do, for `keys list` and error messages."""

    name: str
    device: str
    kinds: frozenset[KeyKind]
    capabilities: frozenset[Capability]


@dataclass(frozen=True)
class KeyInfo:
    """One stored key as a backend reports it."""

    key_id: str
    kind: KeyKind
    backend: str


class KeyBackend:
    """A key store. Subclasses override what they support; the rest answers `NotSupported`.

    Conventions for every backend:
    - `key_id` is a validated name (see `firmware.keys.names`), unique within the backend.
    - `create` is create-if-absent: an existing key of the same kind is kept and reused; an existing
      key of another kind raises `KeyKindMismatch`.
    - `public_key` returns the DER SubjectPublicKeyInfo.
    - ECDSA signatures are DER-encoded (as `cryptography` produces and verifies them).
    - `ECDSA_SHA256_DIGEST` takes a 32-byte SHA-256 digest as `data` (`KeyOperationFailed` for
      any other length) and signs it as is.
    - `encrypt` is AES-256-GCM and returns ciphertext followed by the 16-byte tag; `decrypt` takes
      the same and raises `KeyOperationFailed` when the tag does not verify.
    - A missing key raises `KeyNotFound`.
    """

    name: str = "abstract"
    exports_keys: bool = False  # whether `export_key` gives this backend's key material

    def describe(self) -> BackendInfo:
        raise NotSupported(f"key backend {self.name!r} does not describe itself")

    def create(self, key_id: str, kind: KeyKind) -> KeyInfo:
        raise self._unsupported("creating keys")

    def import_key(self, key_id: str, kind: KeyKind, material: bytes) -> KeyInfo:
        """Store caller-supplied material: raw bytes for symmetric keys, PKCS#8 DER for pairs."""
        raise self._unsupported("importing keys")

    def export_key(self, key_id: str) -> tuple[KeyKind, bytes]:
        """The key's kind and material in `import_key`'s format, to move it to another backend.

        Only a backend that holds the material itself can; one whose keys cannot leave their
        device (a token, a TPM) keeps this default. `exports_keys` says which is the case.
        """
        raise self._unsupported("exporting keys")

    def info(self, key_id: str) -> KeyInfo:
        raise self._unsupported("looking up keys")

    def list_keys(self) -> list[KeyInfo]:
        raise self._unsupported("listing keys")

    def public_key(self, key_id: str) -> bytes:
        raise self._unsupported("reading public keys")

    def sign(self, key_id: str, algorithm: SignAlgorithm, data: bytes) -> bytes:
        raise self._unsupported(f"signing with {algorithm.value}")

    def verify(self, key_id: str, algorithm: SignAlgorithm, data: bytes, signature: bytes) -> bool:
        raise self._unsupported(f"verifying {algorithm.value}")

    def encrypt(self, key_id: str, iv: bytes, aad: bytes, plaintext: bytes) -> bytes:
        raise self._unsupported("AES-256-GCM encryption")

    def decrypt(self, key_id: str, iv: bytes, aad: bytes, ciphertext: bytes) -> bytes:
        raise self._unsupported("AES-256-GCM decryption")

    def delete(self, key_id: str) -> None:
        raise self._unsupported("deleting keys")

    def close(self) -> None:
        """Release sessions and devices; the backend is not used afterwards."""

    def _unsupported(self, what: str) -> NotSupported:
        return NotSupported(
            f"key backend {self.name!r} does not support {what}",
            hint="choose another backend for this key in [keys] of config.toml",
        )
