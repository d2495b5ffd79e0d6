"""Key name validation: the one gate every name passes before it reaches a backend.

A name is 1 to 64 characters of letters, digits, `-`, `_` and `.`, does not start with a dot and
holds no `..`, so it can serve as a file name, a PKCS#11 label and a TPM blob name alike without
ever naming a path outside the backend's store.
"""

from __future__ import annotations

import re

from firmware.keys.errors import InvalidKeyName

MAX_KEY_NAME_LENGTH = 64

_ALLOWED = re.compile(r"[A-Za-z0-9_.-]+")


def validate_key_name(name: object) -> str:
    """Return `name` unchanged when it is a valid key name, else raise `InvalidKeyName`."""
    hint = (
        f"use 1 to {MAX_KEY_NAME_LENGTH} letters, digits, '-', '_' or '.', "
        "not starting with '.' and without '..'"
    )
    if not isinstance(name, str):
        raise InvalidKeyName(f"key name {name!r} is not a string", hint=hint)
    shown = name if len(name) <= MAX_KEY_NAME_LENGTH else name[:MAX_KEY_NAME_LENGTH] + "..."
    if not name:
        raise InvalidKeyName("key name is empty", hint=hint)
    if len(name) > MAX_KEY_NAME_LENGTH:
        raise InvalidKeyName(
            f"key name {shown!r} is {len(name)} characters long, over {MAX_KEY_NAME_LENGTH}",
            hint=hint,
        )
    if not _ALLOWED.fullmatch(name):
        raise InvalidKeyName(f"key name {shown!r} holds characters that are not allowed", hint=hint)
    if name.startswith(".") or ".." in name:
        raise InvalidKeyName(f"key name {shown!r} starts with '.' or holds '..'", hint=hint)
    return name
