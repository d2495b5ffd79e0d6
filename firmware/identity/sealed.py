"""The opaque blob a module's `encrypt` returns: nonce ‖ ciphertext ‖ tag (AES-256-GCM).

The daemon, not the module, picks the 12-byte nonce, at random for every message, so a module
that sends the same `initializationVector` twice never makes two ciphertexts under one nonce
(which would leak the XOR of the plaintexts and GCM's hash key). The module's IV is kept in the
associated data instead: `decrypt` must be given the same IV, or the tag does not verify.

Random 96-bit nonces stay safe for 2^32 messages per key (NIST SP 800-38D); at the default
per-module budget (`[workload.budgets]`, 100 key operations a second) a module needs 16 months of
nonstop encryption to reach that, and a new generation id gives it a new key.
Pure: no I/O, no key; `ModuleIdentities` does the encryption through the key service.
"""

from __future__ import annotations

from firmware.identity.errors import InvalidSealedData

NONCE_BYTES = 12
TAG_BYTES = 16
OVERHEAD = NONCE_BYTES + TAG_BYTES
_CONTEXT = b"edgekeeper module data\x00"


def associated_data(iv: bytes) -> bytes:
    """The GCM associated data binding a blob to the module's `initializationVector`."""
    return _CONTEXT + iv


def split(blob: bytes) -> tuple[bytes, bytes]:
    """`(nonce, ciphertext ‖ tag)` of a sealed blob; `InvalidSealedData` if it is too short to
    be one."""
    if len(blob) < OVERHEAD:
        raise InvalidSealedData(
            f"field 'ciphertext' is {len(blob)} bytes; what encrypt returns is at least "
            f"{OVERHEAD} (nonce, tag)",
            hint="pass the ciphertext exactly as encrypt returned it",
        )
    return blob[:NONCE_BYTES], blob[NONCE_BYTES:]
