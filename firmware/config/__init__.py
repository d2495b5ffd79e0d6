"""Configuration: the TOML schema, loading with file/line positions, validation and board files."""
