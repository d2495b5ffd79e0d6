"""The challenge DPS answers a TPM registration with: the `authenticationKey` blob, built here.

DPS makes an HMAC-SHA256 key for the device and sends it so that only the TPM holding the EK
and the SRK it was told about can use it: the key is duplicated to the SRK (seed encrypted with
RSA-OAEP to the SRK, label "DUPLICATE"; inner wrap with a random AES-128-CFB key; outer CFB wrap
and HMAC from the seed, TPM 2.0 Part 1 §23.3), and the inner wrap key is the credential of a
MakeCredential to the EK bound to the SRK's name (label "IDENTITY", Part 1 §24), so the device
needs ActivateCredential with its EK to unwrap it. tpm2-pytss's `make_credential` and `wrap`
follow those sections; this module only assembles DPS's layout (five UINT16-size-prefixed
structures) around them.
"""

from __future__ import annotations

import os

from tpm2_pytss.constants import TPM2_ALG, TPMA_OBJECT
from tpm2_pytss.types import (
    TPM2B_PUBLIC,
    TPM2B_SENSITIVE,
    TPMT_KEYEDHASH_SCHEME,
    TPMT_SENSITIVE,
    TPMT_SYM_DEF_OBJECT,
    TPMU_SYM_KEY_BITS,
    TPMU_SYM_MODE,
)
from tpm2_pytss.utils import make_credential, wrap

# What an imported HMAC key may carry: Import refuses fixedTPM/fixedParent.
HMAC_KEY_ATTRIBUTES = TPMA_OBJECT.USERWITHAUTH | TPMA_OBJECT.SIGN_ENCRYPT | TPMA_OBJECT.NODA
INNER_KEY_BYTES = 16


def hmac_key_objects(hmac_key: bytes) -> tuple[TPM2B_PUBLIC, TPM2B_SENSITIVE]:
    """The public and sensitive areas of an HMAC-SHA256 keyed-hash object holding `hmac_key`."""
    scheme = TPMT_KEYEDHASH_SCHEME(scheme=TPM2_ALG.HMAC)
    scheme.details.hmac.hashAlg = TPM2_ALG.SHA256
    sensitive, public = TPMT_SENSITIVE.keyedhash_from_secret(
        hmac_key, objectAttributes=HMAC_KEY_ATTRIBUTES, scheme=scheme
    )
    return TPM2B_PUBLIC(publicArea=public), TPM2B_SENSITIVE(sensitiveArea=sensitive)


def make_challenge(ek_public: bytes, srk_public: bytes, hmac_key: bytes) -> bytes:
    """DPS's authenticationKey (decoded from base64) for the device whose marshalled EK and SRK
    TPM2B_PUBLICs were registered, carrying `hmac_key`."""
    ek = TPM2B_PUBLIC.unmarshal(ek_public)[0]
    srk = TPM2B_PUBLIC.unmarshal(srk_public)[0]
    inner_key = os.urandom(INNER_KEY_BYTES)
    credential_blob, secret = make_credential(ek, inner_key, srk.get_name())
    public, sensitive = hmac_key_objects(hmac_key)
    aes128cfb = TPMT_SYM_DEF_OBJECT(
        algorithm=TPM2_ALG.AES,
        keyBits=TPMU_SYM_KEY_BITS(aes=128),
        mode=TPMU_SYM_MODE(aes=TPM2_ALG.CFB),
    )
    _, duplicate, seed = wrap(srk.publicArea, public, sensitive, inner_key, aes128cfb)
    return b"".join(part.marshal() for part in (credential_blob, secret, duplicate, seed, public))
