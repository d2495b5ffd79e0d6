"""Return-code classification: what the connection does for each TPM and TSS answer."""

from __future__ import annotations

import pytest

from firmware.tpm.codes import Outcome, classify, tpm_code


@pytest.mark.parametrize(
    ("rc", "outcome"),
    [
        (0x922, Outcome.RETRY),  # TPM_RC_RETRY
        (0x908, Outcome.RETRY),  # TPM_RC_YIELDED
        (0x90A, Outcome.RETRY),  # TPM_RC_TESTING
        (0xC0922, Outcome.RETRY),  # RETRY passed through a resource manager
        (0x100, Outcome.STARTUP),  # TPM_RC_INITIALIZE
        (0x921, Outcome.LOCKOUT),  # TPM_RC_LOCKOUT
        (0x902, Outcome.FULL),  # TPM_RC_OBJECT_MEMORY
        (0x903, Outcome.FULL),  # TPM_RC_SESSION_MEMORY
        (0x910, Outcome.STALE),  # TPM_RC_REFERENCE_H0: handle not loaded
        (0x916, Outcome.STALE),  # TPM_RC_REFERENCE_H6
        (0x18B, Outcome.STALE),  # TPM_RC_HANDLE against handle 1
        (0x1CB, Outcome.FAILED),  # TPM_RC_HANDLE against parameter 1: a real error
        (0x98E, Outcome.FAILED),  # TPM_RC_AUTH_FAIL against session 1
        (0x9A2, Outcome.FAILED),  # TPM_RC_BAD_AUTH
        (0x1D5, Outcome.FAILED),  # TPM_RC_SIZE against parameter 1
        (0xA000A, Outcome.DISCONNECTED),  # TCTI IO error
        (0xA0008, Outcome.DISCONNECTED),  # TCTI no connection
        (0x70007, Outcome.DISCONNECTED),  # ESAPI bad sequence, left behind by a failed send
        (0x70018, Outcome.STALE),  # ESAPI bad TR
        (0x7000B, Outcome.FAILED),  # ESAPI bad value: our own mistake
    ],
)
def test_classify(rc, outcome):
    assert classify(rc) is outcome


def test_tpm_code_strips_the_resource_manager_layer_only():
    assert tpm_code(0xC0921) == 0x921
    assert tpm_code(0x921) == 0x921
    assert tpm_code(0xA000A) is None
