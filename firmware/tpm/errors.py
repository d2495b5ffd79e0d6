"""Errors of the TPM layer: no TPM to talk to, a TPM in lockout, a command the TPM refused."""

from __future__ import annotations

from firmware.errors import DeviceError, EdgekeeperError

TCTI_HINT = "set [tpm] device in config.toml (docs/transports.md)"
LOCKOUT_HINT = "clear it with `tpm2_dictionarylockout -c` or wait for the lockout to expire"


class TpmUnavailable(DeviceError):
    """No TPM answers at the configured TCTI (missing device, refused socket, lost connection)."""


class TpmLockout(DeviceError):
    """The TPM is in dictionary-attack lockout and refuses authorised commands."""


class TpmCommandFailed(EdgekeeperError):
    """A TPM command answered with an error code; `rc` is the TSS2 return code."""

    def __init__(self, message: str, *, rc: int, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.rc = rc


class TpmSetupError(DeviceError):
    """The TPM cannot be set up for edgekeeper (storage root key missing or unsuitable)."""


class AuthenticationKeyMalformed(EdgekeeperError):
    """The authenticationKey DPS sent for TPM attestation is not the five TPM structures it
    should be (the peer's fault: nothing in the TPM was touched)."""

    http_status = 502


class AuthKeyMissing(EdgekeeperError):
    """The persistent slot that should hold the DPS auth key is empty."""
