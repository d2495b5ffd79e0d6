"""The endorsement key and the RSA storage root key that DPS TPM attestation and IoT Edge use.

The EK (0x81010001) is the TCG EK Credential Profile's RSA template L-1, a primary key of the
endorsement hierarchy; the SRK (0x81000001) is the RSA-2048 template of the TCG provisioning
guidance, a primary key of the owner hierarchy. Both are created and persisted (by the owner)
when their handle is empty, so edgekeeper, IoT Edge's tpmd, the C SDK and tpm2-tools find the
same keys at the same handles. DPS is sent their public areas marshalled as TPM2B_PUBLIC.
"""

from __future__ import annotations

from tpm2_pytss import ESAPI, ESYS_TR
from tpm2_pytss.constants import TPM2_ALG, TPMA_OBJECT
from tpm2_pytss.types import TPM2B_PUBLIC, TPMT_PUBLIC

from firmware.tpm.errors import TpmSetupError
from firmware.tpm.primary import persist_primary, read_persistent

EK_HANDLE = 0x81010001
SRK_HANDLE = 0x81000001
RSA_KEY_BITS = 2048
EK_ATTRIBUTES = (
    TPMA_OBJECT.FIXEDTPM
    | TPMA_OBJECT.FIXEDPARENT
    | TPMA_OBJECT.SENSITIVEDATAORIGIN
    | TPMA_OBJECT.ADMINWITHPOLICY
    | TPMA_OBJECT.RESTRICTED
    | TPMA_OBJECT.DECRYPT
)
SRK_ATTRIBUTES = (
    TPMA_OBJECT.FIXEDTPM
    | TPMA_OBJECT.FIXEDPARENT
    | TPMA_OBJECT.SENSITIVEDATAORIGIN
    | TPMA_OBJECT.USERWITHAUTH
    | TPMA_OBJECT.NODA
    | TPMA_OBJECT.RESTRICTED
    | TPMA_OBJECT.DECRYPT
)
# PolicySecret(TPM_RH_ENDORSEMENT): whoever knows the endorsement hierarchy's password.
EK_POLICY = bytes.fromhex("837197674484b3f81a90cc8d46a5d724fd52d76e06520b64f2a1da1b331469aa")
_STORAGE = TPMA_OBJECT.RESTRICTED | TPMA_OBJECT.DECRYPT
_EK_HINT = (
    "if the endorsement or owner hierarchy has a password, set it in "
    "[tpm.hierarchy_authorization], or create the EK once by hand: "
    "tpm2_createek -c 0x81010001 -G rsa -u ek.pub"
)
_SRK_HINT = (
    "if the owner hierarchy has a password, set it in [tpm.hierarchy_authorization] owner, or "
    "create the SRK once by hand: tpm2_createprimary -C o -G rsa2048:aes128cfb -g sha256 "
    "-a 'fixedtpm|fixedparent|sensitivedataorigin|userwithauth|noda|restricted|decrypt' "
    "-c srk.ctx && tpm2_evictcontrol -C o -c srk.ctx 0x81000001"
)


def ek_template() -> TPM2B_PUBLIC:
    """TCG EK template L-1: RSA-2048, SHA-256, the endorsement policy, AES-128-CFB, zero unique."""
    public = _rsa_storage(EK_ATTRIBUTES)
    public.authPolicy = EK_POLICY
    return TPM2B_PUBLIC(publicArea=public)


def rsa_srk_template() -> TPM2B_PUBLIC:
    """TCG RSA-2048 SRK template: SHA-256, no policy, noDA, AES-128-CFB, zero unique."""
    return TPM2B_PUBLIC(publicArea=_rsa_storage(SRK_ATTRIBUTES))


def ensure_ek(esapi: ESAPI) -> tuple[ESYS_TR, TPM2B_PUBLIC]:
    """The EK's ESAPI handle and public area, created in the endorsement hierarchy if absent.

    An object at 0x81010001 that cannot be the EK (not an RSA-2048 storage key with the
    endorsement policy) raises `TpmSetupError`; the caller closes the handle (`tr_close`).
    """
    found = read_persistent(esapi, EK_HANDLE)
    if found is None:
        return persist_primary(
            esapi, ek_template(), ESYS_TR.ENDORSEMENT, EK_HANDLE, what="the EK", hint=_EK_HINT
        )
    handle, public = found
    area = public.publicArea
    if not _rsa_2048_storage(area) or bytes(area.authPolicy) != EK_POLICY:
        esapi.tr_close(handle)
        raise TpmSetupError(
            f"the persistent TPM object at 0x{EK_HANDLE:08x} is not an RSA-2048 endorsement key "
            "with the TCG policy, which DPS TPM attestation needs",
            hint="the TPM's manufacturer or OS put another key there; if nothing uses it, free "
            f"the handle with `tpm2_evictcontrol -C o -c 0x{EK_HANDLE:08x}` so edgekeeper "
            "creates the standard EK",
        )
    return handle, public


def ensure_rsa_srk(esapi: ESAPI) -> tuple[ESYS_TR, TPM2B_PUBLIC]:
    """The RSA SRK's ESAPI handle and public area, created in the owner hierarchy if absent.

    A storage key already there is used when DPS can wrap keys for it (`is_dps_srk`), else
    `TpmSetupError` says what to do; the caller closes the handle (`tr_close`).
    """
    found = read_persistent(esapi, SRK_HANDLE)
    if found is None:
        return persist_primary(
            esapi,
            rsa_srk_template(),
            ESYS_TR.OWNER,
            SRK_HANDLE,
            what="the storage root key",
            hint=_SRK_HINT,
        )
    handle, public = found
    if not is_dps_srk(public):
        esapi.tr_close(handle)
        raise TpmSetupError(
            f"the persistent TPM object at 0x{SRK_HANDLE:08x} is not an RSA-2048 storage key "
            "with AES-128-CFB and SHA-256, the storage root key DPS TPM attestation wraps its "
            "keys for",
            hint="another program put its own storage key there; if nothing uses it, free the "
            f"handle with `tpm2_evictcontrol -C o -c 0x{SRK_HANDLE:08x}` and restart edgekeeper "
            "(it creates the standard SRK), or use symmetric-key or X.509 attestation",
        )
    return handle, public


def is_dps_srk(public: TPM2B_PUBLIC) -> bool:
    """Whether DPS can use this key as the SRK: RSA-2048 storage key, SHA-256 name, AES-128-CFB
    for its children (what the seed encryption, the name and the outer wrap rely on), usable
    with a password session."""
    area = public.publicArea
    return _rsa_2048_storage(area) and bool(area.objectAttributes & TPMA_OBJECT.USERWITHAUTH)


def marshalled_public(public: TPM2B_PUBLIC) -> bytes:
    """The public area as TPM2B_PUBLIC bytes (UINT16 size, then TPMT_PUBLIC): what DPS gets."""
    return bytes(public.marshal())


def _rsa_storage(attributes: TPMA_OBJECT) -> TPMT_PUBLIC:
    public = TPMT_PUBLIC(type=TPM2_ALG.RSA, nameAlg=TPM2_ALG.SHA256, objectAttributes=attributes)
    detail = public.parameters.rsaDetail
    detail.symmetric.algorithm = TPM2_ALG.AES
    detail.symmetric.keyBits.aes = 128
    detail.symmetric.mode.aes = TPM2_ALG.CFB
    detail.scheme.scheme = TPM2_ALG.NULL
    detail.keyBits = RSA_KEY_BITS
    detail.exponent = 0
    public.unique.rsa = bytes(RSA_KEY_BITS // 8)
    return public


def _rsa_2048_storage(area: TPMT_PUBLIC) -> bool:
    detail = area.parameters.rsaDetail
    return bool(
        area.type == TPM2_ALG.RSA
        and area.nameAlg == TPM2_ALG.SHA256
        and area.objectAttributes & _STORAGE == _STORAGE
        and detail.keyBits == RSA_KEY_BITS
        and detail.symmetric.algorithm == TPM2_ALG.AES
        and detail.symmetric.keyBits.aes == 128
        and detail.symmetric.mode.aes == TPM2_ALG.CFB
    )
