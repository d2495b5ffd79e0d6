"""The storage root key: a persistent ECC P-256 storage key at 0x81000001 under the owner hierarchy.

Every edgekeeper key is created (or imported) under it and loaded under it again after a reset.
When the handle is empty it is filled with a primary key made from the TCG provisioning guidance's
SRK template, so the same TPM always yields the same SRK. An existing RSA or ECC storage key at
the handle (e.g. one provisioned by the OS) is reused as it is.
"""

from __future__ import annotations

from tpm2_pytss import ESAPI, ESYS_TR
from tpm2_pytss.constants import TPM2_ALG, TPM2_ECC, TPMA_OBJECT
from tpm2_pytss.TSS2_Exception import TSS2_Exception
from tpm2_pytss.types import TPM2B_PUBLIC, TPMT_PUBLIC

from firmware.tpm import codes
from firmware.tpm.errors import TpmSetupError

SRK_HANDLE = 0x81000001
SRK_ATTRIBUTES = (
    TPMA_OBJECT.FIXEDTPM
    | TPMA_OBJECT.FIXEDPARENT
    | TPMA_OBJECT.SENSITIVEDATAORIGIN
    | TPMA_OBJECT.USERWITHAUTH
    | TPMA_OBJECT.NODA
    | TPMA_OBJECT.RESTRICTED
    | TPMA_OBJECT.DECRYPT
)
_STORAGE = TPMA_OBJECT.RESTRICTED | TPMA_OBJECT.DECRYPT
_OWNER_HINT = (
    "if the owner hierarchy has a password, set it in [tpm.hierarchy_authorization] owner, or "
    "create the key once by hand: tpm2_createprimary -C o -P PASSWORD -G ecc -c srk.ctx && "
    "tpm2_evictcontrol -C o -P PASSWORD -c srk.ctx 0x{handle:08x}"
)


def srk_template() -> TPM2B_PUBLIC:
    """ECC NIST P-256, SHA-256 name, AES-128-CFB for children, no policy, zero unique point."""
    public = TPMT_PUBLIC(
        type=TPM2_ALG.ECC, nameAlg=TPM2_ALG.SHA256, objectAttributes=SRK_ATTRIBUTES
    )
    detail = public.parameters.eccDetail
    detail.symmetric.algorithm = TPM2_ALG.AES
    detail.symmetric.keyBits.aes = 128
    detail.symmetric.mode.aes = TPM2_ALG.CFB
    detail.scheme.scheme = TPM2_ALG.NULL
    detail.curveID = TPM2_ECC.NIST_P256
    detail.kdf.scheme = TPM2_ALG.NULL
    public.unique.ecc.x = bytes(32)
    public.unique.ecc.y = bytes(32)
    return TPM2B_PUBLIC(publicArea=public)


def ensure_srk(esapi: ESAPI, handle: int = SRK_HANDLE) -> tuple[ESYS_TR, TPM2B_PUBLIC]:
    """The SRK's ESAPI handle and public area, creating and persisting it if the handle is empty.

    TPM errors other than "no object at that handle" propagate as `TSS2_Exception`, for the
    caller's retry policy; an unusable object at the handle raises `TpmSetupError`.
    """
    try:
        srk = esapi.tr_from_tpmpublic(handle)
    except TSS2_Exception as exc:
        if codes.classify(exc.rc) is not codes.Outcome.STALE:
            raise
        return _create(esapi, handle)
    public, _, _ = esapi.read_public(srk)
    attributes = public.publicArea.objectAttributes
    storage = attributes & _STORAGE == _STORAGE
    if public.publicArea.type not in (TPM2_ALG.ECC, TPM2_ALG.RSA) or not storage:
        esapi.tr_close(srk)
        raise TpmSetupError(
            f"the persistent TPM object at 0x{handle:08x} is not a storage key",
            hint=(
                f"free the handle with `tpm2_evictcontrol -C o -c 0x{handle:08x}` "
                "(if nothing else uses it) so edgekeeper can create its storage root key"
            ),
        )
    return srk, public


def _create(esapi: ESAPI, handle: int) -> tuple[ESYS_TR, TPM2B_PUBLIC]:
    try:
        transient, public, _, _, _ = esapi.create_primary(None, srk_template(), ESYS_TR.OWNER)
    except TSS2_Exception as exc:
        if codes.classify(exc.rc) is codes.Outcome.FAILED:
            raise _setup_failed("create", handle, exc) from exc
        raise
    try:
        persistent = esapi.evict_control(ESYS_TR.OWNER, transient, handle)
    except TSS2_Exception as exc:
        if codes.classify(exc.rc) is codes.Outcome.FAILED:
            raise _setup_failed("persist", handle, exc) from exc
        raise
    finally:
        esapi.flush_context(transient)
    return persistent, public


def _setup_failed(step: str, handle: int, exc: TSS2_Exception) -> TpmSetupError:
    return TpmSetupError(
        f"cannot {step} the storage root key at 0x{handle:08x}: {exc}",
        hint=_OWNER_HINT.format(handle=handle),
    )
