"""Signatures and MACs computed inside the TPM with a loaded key.

Messages are hashed with SHA-256 in Python (`ECDSA_SHA256_DIGEST` brings its digest) and the digest
is signed with TPM2_Sign and a null hash-check ticket (the keys are unrestricted, so the TPM needs
no proof that it hashed the data).
ECDSA signatures come back as (r, s) and are returned DER-encoded; RSA signatures as raw bytes.
HMAC-SHA256 is one TPM2_HMAC for data that fits the TPM's input buffer, else an HMAC sequence.
"""

from __future__ import annotations

import contextlib
import functools

from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from tpm2_pytss import ESAPI, ESYS_TR
from tpm2_pytss.constants import TPM2_ALG
from tpm2_pytss.TSS2_Exception import TSS2_Exception
from tpm2_pytss.types import TPM2B_DIGEST, TPMT_SIG_SCHEME

from firmware.keys.backend import SignAlgorithm

MAX_BUFFER = 1024  # TPM2B_MAX_BUFFER: what every TPM 2.0 accepts in one TPM2_HMAC or update

_SCHEMES = {
    SignAlgorithm.ECDSA_SHA256: TPM2_ALG.ECDSA,
    SignAlgorithm.ECDSA_SHA256_DIGEST: TPM2_ALG.ECDSA,
    SignAlgorithm.RSA_PKCS1_SHA256: TPM2_ALG.RSASSA,
    SignAlgorithm.RSA_PSS_SHA256: TPM2_ALG.RSAPSS,
}


@functools.cache
def scheme(algorithm: SignAlgorithm) -> TPMT_SIG_SCHEME:
    """The TPM signing scheme for an asymmetric `algorithm`, with SHA-256 (built once)."""
    chosen = TPMT_SIG_SCHEME(scheme=_SCHEMES[algorithm])
    chosen.details.any.hashAlg = TPM2_ALG.SHA256
    return chosen


def sign_digest(esapi: ESAPI, key: ESYS_TR, algorithm: SignAlgorithm, digest: bytes) -> bytes:
    """Sign a SHA-256 `digest`; ECDSA as DER, RSA PKCS#1 v1.5 / PSS as the raw signature."""
    signature = esapi.sign(key, TPM2B_DIGEST(digest), scheme(algorithm))
    if _SCHEMES[algorithm] == TPM2_ALG.ECDSA:
        ecdsa = signature.signature.ecdsa
        r = int.from_bytes(bytes(ecdsa.signatureR), "big")
        s = int.from_bytes(bytes(ecdsa.signatureS), "big")
        return encode_dss_signature(r, s)
    if algorithm is SignAlgorithm.RSA_PSS_SHA256:
        return bytes(signature.signature.rsapss.sig)
    return bytes(signature.signature.rsassa.sig)


def hmac_sha256(esapi: ESAPI, key: ESYS_TR, data: bytes) -> bytes:
    """HMAC-SHA256 of `data` with a loaded HMAC key, computed by the TPM."""
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
