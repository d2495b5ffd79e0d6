"""Text for people from the local APIs' JSON answers, one module per subject; the CLI and the
console show the same text because both render through these."""
