"""Persistent primary keys: read the object at a persistent handle, or create and persist one.

The storage keys, the SRK and the endorsement key are primary keys: derived from a hierarchy's
seed and a template, so creating one again from the same template gives the same key. TPM errors
other than "no object there" propagate as `TSS2_Exception` for the connection's retry policy;
a refused creation (typically a hierarchy password we lack) raises `TpmSetupError` with `hint`.
"""

from __future__ import annotations

from tpm2_pytss import ESAPI, ESYS_TR
from tpm2_pytss.TSS2_Exception import TSS2_Exception
from tpm2_pytss.types import TPM2B_PUBLIC

from firmware.tpm import codes
from firmware.tpm.errors import TpmSetupError


def read_persistent(esapi: ESAPI, handle: int) -> tuple[ESYS_TR, TPM2B_PUBLIC] | None:
    """The ESAPI handle and public area of the object at `handle`, or None when it is empty.

    The caller closes the returned ESAPI handle (`tr_close`) when it is done with it.
    """
    try:
        object_handle = esapi.tr_from_tpmpublic(handle)
    except TSS2_Exception as exc:
        if codes.classify(exc.rc) is not codes.Outcome.STALE:
            raise
        return None
    public, _, _ = esapi.read_public(object_handle)
    return object_handle, public


def persist_primary(
    esapi: ESAPI,
    template: TPM2B_PUBLIC,
    hierarchy: ESYS_TR,
    handle: int,
    *,
    what: str,
    hint: str,
) -> tuple[ESYS_TR, TPM2B_PUBLIC]:
    """CreatePrimary(`template`) in `hierarchy`, persisted at `handle` by the owner.

    `what` names the key in errors ("the storage key"), `hint` says what to do when the TPM
    refuses. The transient copy is always flushed.
    """
    try:
        transient, public, _, _, _ = esapi.create_primary(None, template, hierarchy)
    except TSS2_Exception as exc:
        raise _refused("create", what, handle, exc, hint) from exc
    try:
        persistent = esapi.evict_control(ESYS_TR.OWNER, transient, handle)
    except TSS2_Exception as exc:
        raise _refused("persist", what, handle, exc, hint) from exc
    finally:
        esapi.flush_context(transient)
    return persistent, public


def evict_persistent(esapi: ESAPI, object_handle: ESYS_TR) -> None:
    """Remove a persistent object (owner authorisation) and close its ESAPI handle, which ESAPI
    keeps after the eviction (a later lookup of the handle number would fail on it)."""
    esapi.evict_control(ESYS_TR.OWNER, object_handle, int(esapi.tr_get_tpm_handle(object_handle)))
    esapi.tr_close(object_handle)


def _refused(
    step: str, what: str, handle: int, exc: TSS2_Exception, hint: str
) -> TSS2_Exception | TpmSetupError:
    if codes.classify(exc.rc) is not codes.Outcome.FAILED:
        return exc  # for the connection's recovery (retry, startup, reconnect)
    return TpmSetupError(f"cannot {step} {what} at 0x{handle:08x}: {exc}", hint=hint)
