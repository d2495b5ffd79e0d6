"""`TpmBackend`: the `KeyBackend` whose keys live in a TPM 2.0, their blobs in files.

Keys are children of edgekeeper's storage key (0x81000002; see `firmware.tpm.layout` for
gateways whose keys were made under 0x81000001); their public and private blobs are kept in
`state_dir` (see `blobs`) and loaded under that key again whenever the TPM lost them (reset,
reboot, simulator restart). On opening, the TPM's storage keys are brought to the current layout
(the RSA SRK at 0x81000001 for DPS and IoT Edge), and the parent of the keys is recorded in
`state_dir`. `attestation` hands the same connection to DPS TPM attestation. Loaded keys stay
loaded between operations. Signing and HMAC happen inside the TPM; verification of signatures is
done in software with the public key; AES-256-GCM runs in software with the key unsealed from the
TPM for that one operation. Thread-safe: the daemon's executor calls it from several threads, and
the TPM connection serialises the commands.
"""

from __future__ import annotations

import contextlib
import hmac
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property, partial
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from tpm2_pytss import ESAPI, ESYS_TR
from tpm2_pytss.TSS2_Exception import TSS2_Exception
from tpm2_pytss.types import TPM2B_PRIVATE, TPM2B_PUBLIC

from firmware.keys import software
from firmware.keys.backend import (
    BackendInfo,
    Capability,
    KeyBackend,
    KeyInfo,
    KeyKind,
    SignAlgorithm,
)
from firmware.keys.errors import (
    KeyBackendUnavailable,
    KeyKindMismatch,
    KeyNotFound,
    KeyOperationFailed,
)
from firmware.keys.file import material
from firmware.keys.tpm import creation, signing
from firmware.keys.tpm.attestation import TpmAttestation
from firmware.keys.tpm.blobs import KeyBlob, KeyBlobStore
from firmware.store.errors import CorruptState
from firmware.tpm import layout, mac
from firmware.tpm.connection import TpmConnection
from firmware.tpm.errors import TpmCommandFailed, TpmLockout, TpmSetupError, TpmUnavailable
from firmware.tpm.handle_record import HandleRecord

if TYPE_CHECKING:
    from firmware.keys.software import PublicKey

T = TypeVar("T")


@dataclass(frozen=True)
class _Key:
    """A key's blob with its TPM structures unmarshalled once."""

    key_id: str
    blob: KeyBlob

    @cached_property
    def public(self) -> TPM2B_PUBLIC:
        return TPM2B_PUBLIC.unmarshal(self.blob.public)[0]

    @cached_property
    def private(self) -> TPM2B_PRIVATE:
        return TPM2B_PRIVATE.unmarshal(self.blob.private)[0]

    @cached_property
    def public_der(self) -> bytes:
        return bytes(self.public.to_der())

    @cached_property
    def public_key(self) -> PublicKey:
        return software.load_public_der(self.key_id, self.public_der)


class TpmBackend(KeyBackend):
    """Keys in the TPM at `device` (a device URL or TCTI string), their blobs in `state_dir`.

    `owner_auth` and `endorsement_auth` are `[tpm.hierarchy_authorization]`'s (needed to create
    the primary keys, and by DPS TPM attestation); `connection` replaces the one built from
    `device` (tests, a shared TPM connection).
    """

    name = "tpm"

    def __init__(
        self,
        device: str,
        state_dir: Path,
        *,
        owner_auth: str | None = None,
        endorsement_auth: str | None = None,
        connection: TpmConnection | None = None,
    ) -> None:
        self._state_dir = Path(state_dir)
        self._store = KeyBlobStore(state_dir)
        self._store.ensure()
        self._tpm = connection or TpmConnection(
            device, owner_auth=owner_auth, endorsement_auth=endorsement_auth
        )
        self._keys: dict[str, _Key] = {}
        self._keys_lock = threading.Lock()
        self._change_lock = threading.Lock()  # create/import/delete, one at a time
        try:
            with _device_errors():
                record = HandleRecord(
                    self._state_dir / layout.PARENT_RECORD, "TPM key parent record"
                )
                self._tpm.settle_storage(record, self._key_parents)
                self._tpm.run("setting up the storage key", self._tpm.srk)
        except BaseException:
            self._tpm.close()
            raise

    def describe(self) -> BackendInfo:
        return BackendInfo(
            name=self.name,
            device=self._tpm.link.text,
            kinds=frozenset(KeyKind),
            capabilities=frozenset(Capability),
        )

    def create(self, key_id: str, kind: KeyKind) -> KeyInfo:
        with self._change_lock:
            if self._store.exists(key_id):
                existing = self._key(key_id).blob.kind
                if existing is not kind:
                    raise KeyKindMismatch(
                        f"key {key_id!r} exists as a {existing.value} key, not {kind.value}",
                        hint="pick another name, or delete the existing key first",
                    )
            else:
                with _device_errors():
                    blob = self._tpm.run(
                        f"creating {kind.value} key {key_id!r}",
                        partial(creation.generate, tpm=self._tpm, kind=kind),
                    )
                self._save(key_id, blob)
        return KeyInfo(key_id=key_id, kind=kind, backend=self.name)

    def import_key(self, key_id: str, kind: KeyKind, key_material: bytes) -> KeyInfo:
        checked = material.check_import(key_id, kind, key_material)
        what = f"importing {kind.value} key {key_id!r}"
        if kind.asymmetric:
            make = partial(creation.import_pair, tpm=self._tpm, kind=kind, pkcs8_der=checked)
        else:
            make = partial(creation.import_secret, tpm=self._tpm, kind=kind, secret=checked)
        with self._change_lock:
            try:
                with _device_errors():
                    blob = self._tpm.run(what, make)
            except TpmCommandFailed as exc:
                raise KeyOperationFailed(
                    exc.message, hint="check that the key material fits the key kind"
                ) from exc
            self._save(key_id, blob)
        return KeyInfo(key_id=key_id, kind=kind, backend=self.name)

    def info(self, key_id: str) -> KeyInfo:
        return KeyInfo(key_id=key_id, kind=self._key(key_id).blob.kind, backend=self.name)

    def list_keys(self) -> list[KeyInfo]:
        return [self.info(key_id) for key_id in self._store.key_ids()]

    def public_key(self, key_id: str) -> bytes:
        key = self._key(key_id)
        if not key.blob.kind.asymmetric:
            raise KeyKindMismatch(
                f"key {key_id!r} is a symmetric {key.blob.kind.value} key and has no public key"
            )
        return key.public_der

    def sign(self, key_id: str, algorithm: SignAlgorithm, data: bytes) -> bytes:
        key = self._key(key_id)
        software.check_algorithm(key_id, key.blob.kind, algorithm)
        if algorithm is SignAlgorithm.HMAC_SHA256:
            return self._run(
                f"computing HMAC-SHA256 with key {key_id!r}",
                lambda esapi: mac.hmac_sha256(esapi, self._loaded(esapi, key), data),
            )
        digest = software.sha256_digest(algorithm, data)
        return self._run(
            f"signing {algorithm.value} with key {key_id!r}",
            lambda esapi: signing.sign_digest(esapi, self._loaded(esapi, key), algorithm, digest),
        )

    def verify(self, key_id: str, algorithm: SignAlgorithm, data: bytes, signature: bytes) -> bool:
        key = self._key(key_id)
        software.check_algorithm(key_id, key.blob.kind, algorithm)
        if algorithm is SignAlgorithm.HMAC_SHA256:
            return hmac.compare_digest(self.sign(key_id, algorithm, data), signature)
        return software.verify_asymmetric(key.public_key, algorithm, data, signature)

    def encrypt(self, key_id: str, iv: bytes, aad: bytes, plaintext: bytes) -> bytes:
        return software.gcm_encrypt(key_id, self._unsealed(key_id), iv, aad, plaintext)

    def decrypt(self, key_id: str, iv: bytes, aad: bytes, ciphertext: bytes) -> bytes:
        return software.gcm_decrypt(key_id, self._unsealed(key_id), iv, aad, ciphertext)

    def delete(self, key_id: str) -> None:
        with self._change_lock:
            self._store.delete(key_id)
            with self._keys_lock:
                self._keys.pop(key_id, None)
            self._tpm.unload(key_id)

    def close(self) -> None:
        self._tpm.close()

    def attestation(self, auth_key_index: int) -> TpmAttestation:
        """DPS TPM attestation on this backend's TPM connection, the auth key at
        0x81000000 + `auth_key_index` (and the next handle)."""
        return TpmAttestation(self._tpm, auth_key_index, self._state_dir)

    def _key_parents(self) -> set[bytes]:
        """The TPM names of the storage keys the stored keys were made under; a damaged key file
        is left for its own key's use to report."""
        parents = set()
        for key_id in self._store.key_ids():
            with contextlib.suppress(CorruptState, KeyNotFound):
                parents.add(self._store.read(key_id).parent)
        return parents

    def _key(self, key_id: str) -> _Key:
        with self._keys_lock:
            key = self._keys.get(key_id)
        if key is None:
            key = _Key(key_id, self._store.read(key_id))
            with self._keys_lock:
                self._keys[key_id] = key
        return key

    def _save(self, key_id: str, blob: KeyBlob) -> None:
        self._store.write(key_id, blob)
        with self._keys_lock:
            self._keys[key_id] = _Key(key_id, blob)
        self._tpm.unload(key_id)

    def _unsealed(self, key_id: str) -> bytes:
        key = self._key(key_id)
        software.check_aes(key_id, key.blob.kind)
        return self._run(
            f"unsealing AES key {key_id!r}",
            lambda esapi: bytes(esapi.unseal(self._loaded(esapi, key))),
        )

    def _loaded(self, esapi: ESAPI, key: _Key) -> ESYS_TR:
        """The key's TPM handle, loading it under the SRK unless it is loaded already."""

        def load() -> ESYS_TR:
            if key.blob.parent != self._tpm.srk_name(esapi):
                raise KeyBackendUnavailable(
                    f"TPM key {key.key_id!r} belongs to another storage root key "
                    "(the TPM was cleared or replaced) and cannot be loaded",
                    hint="delete the key and create or import it again",
                )
            return esapi.load(self._tpm.srk(esapi), key.private, key.public)

        return self._tpm.objects.load(esapi, key.key_id, key.blob.private, load)

    def _run(self, what: str, op: Callable[[ESAPI], T]) -> T:
        with _device_errors():
            return self._tpm.run(what, op)


@contextlib.contextmanager
def _device_errors() -> Iterator[None]:
    """The TPM layer's device errors as the key layer's `KeyBackendUnavailable`."""
    try:
        yield
    except (TpmUnavailable, TpmLockout, TpmSetupError) as exc:
        raise KeyBackendUnavailable(exc.message, hint=exc.hint) from exc
    except TSS2_Exception as exc:  # raised outside a command (marshalling a corrupt blob)
        raise KeyOperationFailed(f"TPM data could not be used: {exc}") from exc
