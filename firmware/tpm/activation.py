"""DPS TPM attestation's challenge: the authenticationKey blob, its activation and import, and the
two persistent slots that keep the device's identity key safe while a new one comes in.

`parse_authentication_key` is sans-IO: five size-prefixed TPM structures (TPM2B_ID_OBJECT
credentialBlob, TPM2B_ENCRYPTED_SECRET secret, TPM2B_PRIVATE dupBlob, TPM2B_ENCRYPTED_SECRET
encSymSeed, TPM2B_PUBLIC idKeyPublic), trailing bytes ignored as IoT Edge and the C SDK do;
anything else raises `AuthenticationKeyMalformed` and nothing else.

`import_authentication_key` recovers the inner wrapping key with TPM2_ActivateCredential (the
SRK with a password session, the EK with a PolicySecret(endorsement) session), imports the HMAC
key under the SRK with it, loads it and persists it.

`TpmIdentityKey` never lets the identity key go before its successor is in (IoT Edge lost device
identities exactly there, iotedge PR#3435): the key lives in one of two persistent slots,
0x81000000 + auth_key_index and the next handle; a new key goes into the slot that is not
current (whatever stale object is there is evicted first: iotedge#6638's "persistent handle
already defined"), and only `commit` records it as current and then evicts the other slot. A power
cut between the two leaves the old key current and intact.
"""

from __future__ import annotations

import contextlib
import struct
from dataclasses import dataclass
from typing import Protocol

from tpm2_pytss import ESAPI, ESYS_TR
from tpm2_pytss.constants import TPM2_ALG, TPM2_SE
from tpm2_pytss.TSS2_Exception import TSS2_Exception
from tpm2_pytss.types import (
    TPM2B_ENCRYPTED_SECRET,
    TPM2B_ID_OBJECT,
    TPM2B_PRIVATE,
    TPM2B_PUBLIC,
    TPMT_SYM_DEF,
    TPMT_SYM_DEF_OBJECT,
    TPMU_SYM_KEY_BITS,
    TPMU_SYM_MODE,
)

from firmware.errors import ConfigError
from firmware.tpm.connection import TpmConnection
from firmware.tpm.endorsement import ensure_ek, ensure_rsa_srk
from firmware.tpm.errors import AuthenticationKeyMalformed, AuthKeyMissing
from firmware.tpm.handle_record import HandleRecord
from firmware.tpm.mac import hmac_sha256
from firmware.tpm.primary import evict_persistent, read_persistent

AUTH_KEY_BASE = 0x81000000
OWNER_PERSISTENT_LAST = 0x817FFFFF
_SIZE = struct.Struct(">H")
_FIELDS = ("credentialBlob", "secret", "dupBlob", "encSymSeed", "idKeyPublic")
_TYPES = (
    TPM2B_ID_OBJECT,
    TPM2B_ENCRYPTED_SECRET,
    TPM2B_PRIVATE,
    TPM2B_ENCRYPTED_SECRET,
    TPM2B_PUBLIC,
)
_HINT = "DPS sent a challenge edgekeeper cannot use; registering again gets a new one"


class _Unmarshalled(Protocol):
    """A TPM structure type: `unmarshal(buf)` gives the structure and the bytes it used."""

    __name__: str

    def unmarshal(self, buf: bytes) -> tuple[object, int]: ...


@dataclass(frozen=True)
class AuthenticationKey:
    """The five structures of a DPS authenticationKey, each as marshalled (UINT16 size + body)."""

    credential_blob: bytes
    secret: bytes
    duplicate: bytes
    encrypted_seed: bytes
    public: bytes


def parse_authentication_key(blob: bytes) -> AuthenticationKey:
    """Split and check a decoded authenticationKey; `AuthenticationKeyMalformed` if not one."""
    fields: list[bytes] = []
    offset = 0
    for name, tpm_type in zip(_FIELDS, _TYPES, strict=True):
        if len(blob) < offset + _SIZE.size:
            raise _malformed(f"it ends before {name}'s size ({len(blob)} bytes)")
        (size,) = _SIZE.unpack_from(blob, offset)
        end = offset + _SIZE.size + size
        if size == 0:
            raise _malformed(f"{name} is empty")
        if len(blob) < end:
            raise _malformed(f"{name} says {size} bytes, {len(blob) - offset - 2} follow")
        field = blob[offset:end]
        _check_structure(name, tpm_type, field)
        fields.append(field)
        offset = end
    key = AuthenticationKey(*fields)
    public = TPM2B_PUBLIC.unmarshal(key.public)[0].publicArea
    if public.type != TPM2_ALG.KEYEDHASH:
        raise _malformed("idKeyPublic is not a keyed-hash (HMAC) key")
    return key


def import_authentication_key(esapi: ESAPI, key: AuthenticationKey, persist_handle: int) -> None:
    """Activate, import, load and persist `key` at the empty `persist_handle` (an operation for
    `TpmConnection.run`). The EK and the RSA SRK are created first if absent; the policy
    session and every transient object are flushed whatever happens."""
    ek, _ = ensure_ek(esapi)
    try:
        srk, _ = ensure_rsa_srk(esapi)
    except BaseException:
        esapi.tr_close(ek)
        raise
    try:
        inner_key = _activate(esapi, key, srk, ek)
        public = TPM2B_PUBLIC.unmarshal(key.public)[0]
        private = esapi.import_(
            srk,
            bytes(inner_key),
            public,
            TPM2B_PRIVATE.unmarshal(key.duplicate)[0],
            TPM2B_ENCRYPTED_SECRET.unmarshal(key.encrypted_seed)[0],
            _aes128cfb_object(),
        )
        loaded = esapi.load(srk, private, public)
        try:
            esapi.tr_close(esapi.evict_control(ESYS_TR.OWNER, loaded, persist_handle))
        finally:
            esapi.flush_context(loaded)
    finally:
        esapi.tr_close(srk)
        esapi.tr_close(ek)


class TpmIdentityKey:
    """The DPS auth (identity) key in two persistent slots; which one is current is `record`'s.

    Methods block (TPM commands through `tpm`); call them from the executor.
    """

    def __init__(self, tpm: TpmConnection, auth_key_index: int, record: HandleRecord) -> None:
        first = AUTH_KEY_BASE + auth_key_index
        if not AUTH_KEY_BASE <= first < OWNER_PERSISTENT_LAST:
            raise ConfigError(
                f"[tpm] auth_key_index 0x{auth_key_index:06x} leaves no room for the second "
                "auth key slot",
                hint="use an index between 0x000000 and 0x7ffffe (the default is 0x000100)",
            )
        self.slots = (first, first + 1)
        self._tpm = tpm
        self._record = record

    def current_handle(self) -> int | None:
        """The slot holding the committed key, or None before the first commit."""
        current = self._record.read()
        return current if current in self.slots else None

    def interrupted(self) -> bool:
        """True if the spare slot holds a key: an attestation was cut short between the import
        and the commit (or the old key's eviction), so which key DPS gave the hub is unknown."""

        def occupied(esapi: ESAPI) -> bool:
            found = read_persistent(esapi, self._spare())
            if found is None:
                return False
            esapi.tr_close(found[0])
            return True

        return self._tpm.run("looking for an interrupted DPS attestation", occupied)

    def import_new(self, blob: bytes) -> int:
        """Import DPS's authenticationKey `blob` into the slot that is not current; its handle.

        The blob is checked before the TPM is touched; the current slot is never written.
        """
        key = parse_authentication_key(blob)

        def put(esapi: ESAPI) -> int:
            spare = self._spare()
            _evict_if_present(esapi, spare)
            import_authentication_key(esapi, key, spare)
            return spare

        return self._tpm.run("importing the DPS authentication key", put)

    def commit(self, handle: int) -> None:
        """Make `handle` (what `import_new` returned) the current key, then evict the other slot.

        One operation under the connection's lock, so an import cannot slip in between."""
        if handle not in self.slots:
            raise ValueError(f"0x{handle:08x} is not a DPS auth key slot ({self._slot_names()})")
        other = self.slots[1] if handle == self.slots[0] else self.slots[0]

        def switch(esapi: ESAPI) -> None:
            esapi.tr_close(_auth_key(esapi, handle))
            self._record.write(handle)
            _evict_if_present(esapi, other)

        self._tpm.run(f"making the DPS auth key at 0x{handle:08x} the current one", switch)

    def hmac(self, handle: int, data: bytes) -> bytes:
        """HMAC-SHA256 of `data` with the key at `handle`, computed by the TPM."""

        def compute(esapi: ESAPI) -> bytes:
            key = _auth_key(esapi, handle)
            try:
                return hmac_sha256(esapi, key, data)
            finally:
                esapi.tr_close(key)

        return self._tpm.run(f"computing an HMAC with the DPS auth key at 0x{handle:08x}", compute)

    def _spare(self) -> int:
        return self.slots[1] if self.current_handle() == self.slots[0] else self.slots[0]

    def _slot_names(self) -> str:
        return " or ".join(f"0x{slot:08x}" for slot in self.slots)


def _check_structure(name: str, tpm_type: _Unmarshalled, field: bytes) -> None:
    try:
        _, consumed = tpm_type.unmarshal(field)
    except (TSS2_Exception, ValueError) as exc:
        raise _malformed(f"{name} is not a {tpm_type.__name__} ({exc})") from exc
    if consumed != len(field):
        raise _malformed(f"{name} holds {len(field) - consumed} bytes its structure does not use")


def _activate(esapi: ESAPI, key: AuthenticationKey, srk: ESYS_TR, ek: ESYS_TR) -> bytes:
    session = esapi.start_auth_session(
        ESYS_TR.NONE, ESYS_TR.NONE, TPM2_SE.POLICY, _aes128cfb_session(), TPM2_ALG.SHA256
    )
    try:
        esapi.policy_secret(ESYS_TR.ENDORSEMENT, session, b"", b"", b"", 0)
        inner_key = esapi.activate_credential(
            srk,
            ek,
            TPM2B_ID_OBJECT.unmarshal(key.credential_blob)[0],
            TPM2B_ENCRYPTED_SECRET.unmarshal(key.secret)[0],
            session1=ESYS_TR.PASSWORD,
            session2=session,
        )
    finally:
        with contextlib.suppress(TSS2_Exception):  # gone already if the TPM ended it
            esapi.flush_context(session)
    return bytes(inner_key)


def _auth_key(esapi: ESAPI, handle: int) -> ESYS_TR:
    """The ESAPI handle of the auth key at `handle` (the caller closes it), or `AuthKeyMissing`."""
    found = read_persistent(esapi, handle)
    if found is None:
        raise AuthKeyMissing(
            f"no DPS auth key at 0x{handle:08x} in the TPM",
            hint="provision again: DPS TPM attestation imports a new key",
        )
    return found[0]


def _evict_if_present(esapi: ESAPI, handle: int) -> None:
    found = read_persistent(esapi, handle)
    if found is not None:
        evict_persistent(esapi, found[0])


def _aes128cfb_session() -> TPMT_SYM_DEF:
    return TPMT_SYM_DEF(
        algorithm=TPM2_ALG.AES,
        keyBits=TPMU_SYM_KEY_BITS(aes=128),
        mode=TPMU_SYM_MODE(aes=TPM2_ALG.CFB),
    )


def _aes128cfb_object() -> TPMT_SYM_DEF_OBJECT:
    return TPMT_SYM_DEF_OBJECT(
        algorithm=TPM2_ALG.AES,
        keyBits=TPMU_SYM_KEY_BITS(aes=128),
        mode=TPMU_SYM_MODE(aes=TPM2_ALG.CFB),
    )


def _malformed(why: str) -> AuthenticationKeyMalformed:
    return AuthenticationKeyMalformed(f"DPS's authenticationKey is malformed: {why}", hint=_HINT)
