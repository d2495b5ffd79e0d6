"""Key service: one KeyBackend interface over files, PKCS#11 tokens and TPM 2.0; opaque handles."""
