"""What a TSS2 return code means for the caller: retry, start the TPM up, reload, reconnect, fail.

Return codes carry a layer in bits 16-23 (0 for the TPM itself, RESMGR_TPM for a resource manager
passing a TPM code through, TCTI, ESAPI, ...); TPM format-one codes also carry the number of the
handle, parameter or session at fault in bits 8-11.
"""

from __future__ import annotations

import enum

from tpm2_pytss.constants import TPM2_RC, TSS2_RC

_LAYER_MASK = 0xFF << 16
_PASSTHROUGH_LAYERS = (0, int(TSS2_RC.RESMGR_TPM_RC_LAYER))
_FMT1 = int(TPM2_RC.FMT1)
_FMT1_PARAMETER = int(TPM2_RC.P)
_FMT1_SESSION = int(TPM2_RC.S)
_FMT1_NUMBER = 0x700

_BUSY = frozenset(int(c) for c in (TPM2_RC.RETRY, TPM2_RC.YIELDED, TPM2_RC.TESTING))
_FULL = frozenset(
    int(c)
    for c in (
        TPM2_RC.OBJECT_MEMORY,
        TPM2_RC.SESSION_MEMORY,
        TPM2_RC.MEMORY,
        TPM2_RC.OBJECT_HANDLES,
    )
)
_NOT_LOADED = range(int(TPM2_RC.REFERENCE_H0), int(TPM2_RC.REFERENCE_H6) + 1)


class Outcome(enum.Enum):
    """What to do after a command failed with a given return code."""

    RETRY = "retry"  # the TPM is busy (RETRY, YIELDED, TESTING): back off and send it again
    STARTUP = "startup"  # the TPM was reset and wants TPM2_Startup; loaded objects are gone
    STALE = "stale"  # a handle no longer names a loaded object: reload and send it again
    FULL = "full"  # no room for another loaded object: flush one and send it again
    LOCKOUT = "lockout"  # dictionary-attack lockout
    DISCONNECTED = "disconnected"  # the TCTI lost the TPM: reconnect
    FAILED = "failed"  # anything else: report it


def tpm_code(rc: int) -> int | None:
    """The TPM's own response code inside `rc`, or None when a TSS layer raised it."""
    if rc & _LAYER_MASK in _PASSTHROUGH_LAYERS:
        return rc & 0xFFFF
    return None


def classify(rc: int) -> Outcome:
    """The `Outcome` for a failed command's return code."""
    code = tpm_code(rc)
    if code is None:
        if rc & _LAYER_MASK == TSS2_RC.TCTI_RC_LAYER or rc == TSS2_RC.ESYS_RC_BAD_SEQUENCE:
            return Outcome.DISCONNECTED
        if rc == TSS2_RC.ESYS_RC_BAD_TR:
            return Outcome.STALE
        return Outcome.FAILED
    if code in _BUSY:
        return Outcome.RETRY
    if code == TPM2_RC.INITIALIZE:
        return Outcome.STARTUP
    if code == TPM2_RC.LOCKOUT:
        return Outcome.LOCKOUT
    if code in _FULL:
        return Outcome.FULL
    if code in _NOT_LOADED or _is_handle_fault(code):
        return Outcome.STALE
    return Outcome.FAILED


def _is_handle_fault(code: int) -> bool:
    """TPM_RC_HANDLE reported against one of a command's handles (not a parameter or session)."""
    if not code & _FMT1 or code & (_FMT1_PARAMETER | _FMT1_SESSION):
        return False
    return code & ~_FMT1_NUMBER == TPM2_RC.HANDLE and code & _FMT1_NUMBER != 0
