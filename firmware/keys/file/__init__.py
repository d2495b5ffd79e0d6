"""The file backend: software keys (cryptography) stored as 0600 files in a 0700 directory."""

from firmware.keys.file.backend import FileBackend

__all__ = ["FileBackend"]
