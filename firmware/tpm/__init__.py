"""TPM 2.0 access: TCTI selection and command framing."""
