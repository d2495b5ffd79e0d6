"""The token's user PIN: from config, or from a 0600 file only its owner can read."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from firmware.errors import ConfigError
from firmware.keys.pkcs11.errors import PinFileRefused


def resolve_pin(pin: str | None, pin_file: Path | None) -> bytes | None:
    """The PIN as bytes, or None when neither is set; refuses both set and unsafe files."""
    if pin is not None and pin_file is not None:
        raise ConfigError(
            "[keys.pkcs11] pin and pin_file are both set", hint="keep only one of them"
        )
    if pin_file is not None:
        return read_pin_file(Path(pin_file))
    return None if pin is None else pin.encode("utf-8")


def read_pin_file(path: Path) -> bytes:
    """The first line of `path`; the file must be a regular file with no group or other access."""
    hint = f"put the token's user PIN in {path} and run `chmod 600 {path}`"
    try:
        with open(path, "rb") as handle:
            mode = os.fstat(handle.fileno()).st_mode
            content = handle.read(4096)
    except OSError as err:
        raise PinFileRefused(f"PIN file {path} cannot be read: {err.strerror}", hint=hint) from err
    if not stat.S_ISREG(mode):
        raise PinFileRefused(f"PIN file {path} is not a regular file", hint=hint)
    if mode & 0o077:
        raise PinFileRefused(
            f"PIN file {path} is readable by others (mode {stat.S_IMODE(mode):04o})",
            hint=f"run `chmod 600 {path}`",
        )
    pin = content.splitlines()[0] if content else b""
    if not pin:
        raise PinFileRefused(f"PIN file {path} is empty", hint=hint)
    return pin
