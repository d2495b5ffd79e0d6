"""TPM 2.0 access over tpm2-pytss: the link to the TPM, a connection that survives resets, the
keys at the standard persistent handles, and DPS TPM attestation's challenge.

`link` reaches the TPM at `[tpm] device`: through tpm2-tss's TCTIs (`tcti`) or through one of
edgekeeper's own transports wrapped as a Python TCTI (`pytcti`). `connection.TpmConnection` runs
ESAPI commands with retries and recovery; `srk` keeps edgekeeper's storage key (0x81000002),
`endorsement` the EK (0x81010001) and the RSA SRK (0x81000001), `layout` the migration between
the two layouts; `activation` parses, activates and imports DPS's authenticationKey into two auth
key slots; `primary`, `handle_record` and `mac` are their shared pieces; `objects` caches loaded
objects; `codes` and `retry` hold the policy for TPM answers.
"""
