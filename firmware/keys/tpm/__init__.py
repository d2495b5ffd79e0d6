"""The TPM 2.0 key backend: keys under the storage root key, blobs in files, work in the TPM."""

from firmware.keys.tpm.backend import TpmBackend

__all__ = ["TpmBackend"]
