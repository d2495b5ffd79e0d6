"""Which keys of a configuration layer hold secrets, and whether its file keeps them private.

A layer holds a secret where it sets a setting marked `secret=True` in the schema (a PIN, a
symmetric key, a connection string, a password) or writes a secret inside other text (a PKCS#11
URI's `pin-value=`, a `SharedAccessKey=`: what `firmware.logs.redact` hides). Such a file must be
readable by its owner alone: any group or other permission bit (`mode & 0o077`) refuses it,
whoever owns it. A root-owned 0640 file is refused too: the daemon reads its config as root and
needs no group, and a group (`adm`, a vendor's) is exactly who should not have the device's keys.
IoT Edge ships `/etc/aziot/config.toml` as 0600 root; so do we.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from firmware.config import schema
from firmware.config.validate import fields_of, section_type, toml_key
from firmware.redaction import holds_secret

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

#: Permission bits that let anyone but the file's owner in.
NOT_OWNER = 0o077


def secret_keys(document: Mapping[str, Any]) -> list[str]:
    """The dotted keys of a parsed layer (edgekeeper's spellings) that hold a secret, in order."""
    return list(_secrets(document, schema.Config, ""))


def exposed(mode: int) -> bool:
    """True if permission bits `mode` let the file's group or others in."""
    return bool(mode & NOT_OWNER)


def _secrets(
    table: Mapping[str, Any], cls: type[DataclassInstance] | None, path: str
) -> Iterator[str]:
    """Secret keys of `table`, a section of type `cls` (None: free-form TOML such as env)."""
    known = {toml_key(f): (f, tp) for f, tp in fields_of(cls)} if cls is not None else {}
    for key, value in table.items():
        dotted = f"{path}.{key}" if path else key
        found = known.get(key)
        if found is not None and found[0].metadata.get(schema.SECRET):
            yield dotted
        elif isinstance(value, Mapping):
            yield from _secrets(value, section_type(found[1]) if found else None, dotted)
        elif _text_holds_secret(value):
            yield dotted


def _text_holds_secret(value: object) -> bool:
    if isinstance(value, str):
        return holds_secret(value)
    if isinstance(value, list):
        return any(_text_holds_secret(v) for v in value)
    if isinstance(value, Mapping):
        return any(_text_holds_secret(v) for v in value.values())
    return False
