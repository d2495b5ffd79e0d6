"""Public-area templates for edgekeeper's TPM keys, one per key kind and origin.

Every key is an ordinary child of the SRK with no password and `noDA`, so dictionary-attack lockout
caused by other programs does not stop edgekeeper's keys. Signing keys carry a null scheme: the
scheme (ECDSA, RSASSA or RSAPSS with SHA-256) is chosen at each TPM2_Sign. Generated keys are
`fixedTPM | fixedParent` (they never leave this TPM); imported pairs must leave those clear, as
TPM2_Import requires. AES-256 keys are sealed data objects: TPM 2.0 has no GCM mode, so the key is
unsealed into memory for each operation (see docs/tpm.md).
"""

from __future__ import annotations

from tpm2_pytss.constants import TPM2_ALG, TPM2_ECC, TPMA_OBJECT
from tpm2_pytss.types import TPM2B_PUBLIC, TPMT_PUBLIC

from firmware.keys.backend import KeyKind

_USE = TPMA_OBJECT.USERWITHAUTH | TPMA_OBJECT.NODA
_FIXED = TPMA_OBJECT.FIXEDTPM | TPMA_OBJECT.FIXEDPARENT
GENERATED_SIGNING = _FIXED | _USE | TPMA_OBJECT.SENSITIVEDATAORIGIN | TPMA_OBJECT.SIGN_ENCRYPT
IMPORTED_HMAC = _FIXED | _USE | TPMA_OBJECT.SIGN_ENCRYPT
IMPORTED_PAIR = _USE | TPMA_OBJECT.SIGN_ENCRYPT
SEALED = _FIXED | _USE


def generated(kind: KeyKind) -> TPM2B_PUBLIC:
    """The template for a key the TPM generates (EC, RSA, HMAC) or seals (AES)."""
    if kind is KeyKind.EC_P256:
        return TPM2B_PUBLIC(publicArea=_ecc_p256(GENERATED_SIGNING))
    if kind is KeyKind.RSA_2048:
        return TPM2B_PUBLIC(publicArea=_rsa_2048(GENERATED_SIGNING))
    if kind is KeyKind.HMAC_SHA256:
        return TPM2B_PUBLIC(publicArea=_hmac_sha256(GENERATED_SIGNING))
    return TPM2B_PUBLIC(publicArea=_sealed())


def imported_secret(kind: KeyKind) -> TPM2B_PUBLIC:
    """The template for an HMAC or AES secret handed to TPM2_Create as sensitive data."""
    if kind is KeyKind.HMAC_SHA256:
        return TPM2B_PUBLIC(publicArea=_hmac_sha256(IMPORTED_HMAC))
    return TPM2B_PUBLIC(publicArea=_sealed())


def _ecc_p256(attributes: TPMA_OBJECT) -> TPMT_PUBLIC:
    public = TPMT_PUBLIC(type=TPM2_ALG.ECC, nameAlg=TPM2_ALG.SHA256, objectAttributes=attributes)
    detail = public.parameters.eccDetail
    detail.symmetric.algorithm = TPM2_ALG.NULL
    detail.scheme.scheme = TPM2_ALG.NULL
    detail.curveID = TPM2_ECC.NIST_P256
    detail.kdf.scheme = TPM2_ALG.NULL
    return public


def _rsa_2048(attributes: TPMA_OBJECT) -> TPMT_PUBLIC:
    public = TPMT_PUBLIC(type=TPM2_ALG.RSA, nameAlg=TPM2_ALG.SHA256, objectAttributes=attributes)
    detail = public.parameters.rsaDetail
    detail.symmetric.algorithm = TPM2_ALG.NULL
    detail.scheme.scheme = TPM2_ALG.NULL
    detail.keyBits = 2048
    detail.exponent = 0
    return public


def _hmac_sha256(attributes: TPMA_OBJECT) -> TPMT_PUBLIC:
    public = TPMT_PUBLIC(
        type=TPM2_ALG.KEYEDHASH, nameAlg=TPM2_ALG.SHA256, objectAttributes=attributes
    )
    scheme = public.parameters.keyedHashDetail.scheme
    scheme.scheme = TPM2_ALG.HMAC
    scheme.details.hmac.hashAlg = TPM2_ALG.SHA256
    return public


def _sealed() -> TPMT_PUBLIC:
    public = TPMT_PUBLIC(type=TPM2_ALG.KEYEDHASH, nameAlg=TPM2_ALG.SHA256, objectAttributes=SEALED)
    public.parameters.keyedHashDetail.scheme.scheme = TPM2_ALG.NULL
    return public
