"""HMAC-SHA256 computed by the TPM with a loaded or persistent keyed-hash key.

Data that fits the TPM's input buffer is one TPM2_HMAC; longer data goes through an HMAC
sequence (TPM2_HMAC_Start, TPM2_SequenceUpdate in buffer-sized chunks, TPM2_SequenceComplete),
and the sequence is flushed if a step fails.
"""

from __future__ import annotations

import contextlib

from tpm2_pytss import ESAPI, ESYS_TR
from tpm2_pytss.constants import TPM2_ALG
from tpm2_pytss.TSS2_Exception import TSS2_Exception

MAX_BUFFER = 1024  # TPM2B_MAX_BUFFER: what every TPM 2.0 accepts in one TPM2_HMAC or update


def hmac_sha256(esapi: ESAPI, key: ESYS_TR, data: bytes) -> bytes:
    """HMAC-SHA256 of `data` with `key` (password session, empty auth), computed by the TPM."""
    if len(data) <= MAX_BUFFER:
        return bytes(esapi.hmac(key, data, TPM2_ALG.SHA256))
    sequence = esapi.hmac_start(key, b"", TPM2_ALG.SHA256)
    try:
        last = len(data) - (len(data) - 1) % MAX_BUFFER - 1
        for start in range(0, last, MAX_BUFFER):
            esapi.sequence_update(sequence, data[start : start + MAX_BUFFER])
        result, _ = esapi.sequence_complete(sequence, data[last:])
    except TSS2_Exception:
        with contextlib.suppress(TSS2_Exception):
            esapi.flush_context(sequence)
        raise
    return bytes(result)
