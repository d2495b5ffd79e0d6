"""Signatures computed inside the TPM with a loaded key.

Messages are hashed with SHA-256 in Python (`ECDSA_SHA256_DIGEST` brings its digest) and the digest
is signed with TPM2_Sign and a null hash-check ticket (the keys are unrestricted, so the TPM needs
no proof that it hashed the data).
ECDSA signatures come back as (r, s) and are returned DER-encoded; RSA signatures as raw bytes.
MACs are `firmware.tpm.mac`'s.
"""

from __future__ import annotations

import functools

from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from tpm2_pytss import ESAPI, ESYS_TR
from tpm2_pytss.constants import TPM2_ALG
from tpm2_pytss.types import TPM2B_DIGEST, TPMT_SIG_SCHEME

from firmware.keys.backend import SignAlgorithm

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
