"""Power-safe persistent state: atomic writes and the state store."""
