"""`TpmAttestation`: what DPS TPM attestation needs of the TPM, on the key service's connection.

The key service owns the one connection to the TPM (a simulator serves one client at a time), so
the identity layer reaches the EK, the RSA SRK and the DPS auth key through this facade of the
TPM backend. Methods block (TPM commands, a small state file): call them from the executor.
They are thread-safe: every command goes through the `TpmConnection`'s lock.

Which of the two auth key slots holds the committed key is recorded in `dps-auth-key.json` in the
TPM key directory (see `firmware.tpm.activation.TpmIdentityKey`).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from pathlib import Path

from tpm2_pytss import ESAPI, ESYS_TR
from tpm2_pytss.types import TPM2B_PUBLIC

from firmware.tpm.activation import TpmIdentityKey
from firmware.tpm.connection import TpmConnection
from firmware.tpm.endorsement import ensure_ek, ensure_rsa_srk, marshalled_public
from firmware.tpm.errors import AuthKeyMissing
from firmware.tpm.handle_record import HandleRecord

AUTH_KEY_RECORD = "dps-auth-key.json"
_Ensure = Callable[[ESAPI], tuple[ESYS_TR, TPM2B_PUBLIC]]


class TpmAttestation:
    """The EK, the RSA SRK and the DPS auth key of the TPM behind `tpm`."""

    def __init__(self, tpm: TpmConnection, auth_key_index: int, state_dir: Path) -> None:
        self._tpm = tpm
        record = HandleRecord(Path(state_dir) / AUTH_KEY_RECORD, "DPS auth key record")
        self._identity = TpmIdentityKey(tpm, auth_key_index, record)

    def endorsement_key(self) -> bytes:
        """The EK's marshalled TPM2B_PUBLIC (created at 0x81010001 if absent)."""
        return self._tpm.run("reading the endorsement key", _public_of(ensure_ek))

    def storage_root_key(self) -> bytes:
        """The RSA SRK's marshalled TPM2B_PUBLIC (created at 0x81000001 if absent)."""
        return self._tpm.run("reading the storage root key", _public_of(ensure_rsa_srk))

    def registration_id(self) -> str:
        """The C SDK's default registration id: base32 of SHA-256 of the marshalled EK, in lower
        case, without padding."""
        digest = hashlib.sha256(self.endorsement_key()).digest()
        return base64.b32encode(digest).decode("ascii").rstrip("=").lower()

    def import_key(self, blob: bytes) -> int:
        """Import DPS's decoded authenticationKey into the free slot; the new key's handle.

        The committed key is untouched until `commit`; sign with the new key by passing the
        handle to `hmac`.
        """
        return self._identity.import_new(blob)

    def interrupted(self) -> bool:
        """True if an earlier attestation was cut short after the import (see
        `TpmIdentityKey.interrupted`): the next start asks DPS again instead of the cache."""
        return self._identity.interrupted()

    def commit(self, handle: int) -> None:
        """Make the key `import_key` returned the device's key; the previous one is evicted."""
        self._identity.commit(handle)

    def hmac(self, data: bytes, handle: int | None = None) -> bytes:
        """HMAC-SHA256 of `data` in the TPM, with the committed key or the key at `handle`."""
        if handle is None:
            handle = self._identity.current_handle()
            if handle is None:
                raise AuthKeyMissing(
                    "the TPM holds no committed DPS auth key yet",
                    hint="provision with DPS TPM attestation first",
                )
        return self._identity.hmac(handle, data)


def _public_of(ensure: _Ensure) -> Callable[[ESAPI], bytes]:
    def read(esapi: ESAPI) -> bytes:
        handle, public = ensure(esapi)
        esapi.tr_close(handle)
        return marshalled_public(public)

    return read
