"""edgekeeper's storage key: a persistent ECC P-256 storage key at 0x81000002 (owner hierarchy).

Every edgekeeper key is created (or imported) under it and loaded under it again after a reset.
When the handle is empty it is filled with a primary key made from the TCG provisioning
guidance's ECC SRK template, so the same TPM always yields the same key. The RSA SRK at
0x81000001, which DPS, IoT Edge and tpm2-tools expect there, is `endorsement`'s; how a TPM set up
by an earlier edgekeeper (this ECC key at 0x81000001) gets to this layout is `layout`'s.
"""

from __future__ import annotations

from tpm2_pytss import ESAPI, ESYS_TR
from tpm2_pytss.constants import TPM2_ALG, TPM2_ECC, TPMA_OBJECT
from tpm2_pytss.types import TPM2B_PUBLIC, TPMT_PUBLIC

from firmware.tpm.endorsement import SRK_ATTRIBUTES, SRK_HANDLE, rsa_srk_template
from firmware.tpm.errors import TpmSetupError
from firmware.tpm.primary import persist_primary, read_persistent

STORAGE_HANDLE = 0x81000002
_STORAGE = TPMA_OBJECT.RESTRICTED | TPMA_OBJECT.DECRYPT
_OWNER_HINT = (
    "if the owner hierarchy has a password, set it in [tpm.hierarchy_authorization] owner, or "
    "create the key once by hand: tpm2_createprimary -C o -P PASSWORD -G ecc -c srk.ctx && "
    "tpm2_evictcontrol -C o -P PASSWORD -c srk.ctx 0x{handle:08x}"
)


def storage_key_template() -> TPM2B_PUBLIC:
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


def storage_key_name(esapi: ESAPI) -> bytes:
    """The TPM name the storage key template gives on this TPM (made transiently, then flushed)."""
    transient, public, _, _, _ = esapi.create_primary(None, storage_key_template(), ESYS_TR.OWNER)
    esapi.flush_context(transient)
    return bytes(public.get_name())


def ensure_storage_key(esapi: ESAPI, handle: int = STORAGE_HANDLE) -> tuple[ESYS_TR, TPM2B_PUBLIC]:
    """The storage key at `handle`: its ESAPI handle and public area, created if it is empty.

    At 0x81000002 an empty handle gets the ECC storage key; at 0x81000001 (a gateway whose keys
    were made under a storage key the OS provisioned there) the standard RSA SRK. An RSA or ECC
    storage key already there is used as it is; anything else raises `TpmSetupError`. TPM errors
    other than "no object at that handle" propagate as `TSS2_Exception`.
    """
    found = read_persistent(esapi, handle)
    if found is None:
        template = rsa_srk_template() if handle == SRK_HANDLE else storage_key_template()
        return persist_primary(
            esapi,
            template,
            ESYS_TR.OWNER,
            handle,
            what="the storage key",
            hint=_OWNER_HINT.format(handle=handle),
        )
    key, public = found
    area = public.publicArea
    if (
        area.type not in (TPM2_ALG.ECC, TPM2_ALG.RSA)
        or area.objectAttributes & _STORAGE != _STORAGE
    ):
        esapi.tr_close(key)
        raise TpmSetupError(
            f"the persistent TPM object at 0x{handle:08x} is not a storage key",
            hint=(
                f"free the handle with `tpm2_evictcontrol -C o -c 0x{handle:08x}` "
                "(if nothing else uses it) so edgekeeper can create its storage key"
            ),
        )
    return key, public
