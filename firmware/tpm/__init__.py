"""TPM 2.0 access over tpm2-pytss: TCTI selection, the SRK, and a connection that survives resets.

`tcti` parses `[tpm] tcti` and opens the transport; `connection.TpmConnection` runs ESAPI commands
with retries and recovery; `srk` keeps the persistent storage root key; `objects` caches loaded
objects; `codes` and `retry` hold the policy for TPM answers.
"""
