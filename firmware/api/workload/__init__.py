"""The workload API: what modules call on their own socket (sign, encrypt, certificates)."""
