"""What `edgekeeper config validate` and `edgekeeper config show` print.

`validate_report()` loads the layers and returns the verdict as text (every problem, one a line).
`show_effective()` renders a loaded `Config` back as TOML (or JSON) with secrets replaced by
`<redacted>` (secret settings whole; in other strings, what `firmware.logs.redact` finds, such as
a PKCS#11 URI's `pin-value=`) and, when asked, the file and line each value came from.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, TypeGuard

from firmware.config import loader, schema
from firmware.config.schema import REDACTED
from firmware.config.validate import fields_of, toml_key
from firmware.redaction import redact

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def validate_report(
    config_file: Path | None = None, board: str | Path | None = None
) -> tuple[bool, str]:
    """(ok, text) for `config validate`: the layers read, then every problem or "valid"."""
    outcome = loader.validate_files(config_file, board)
    layers = ", ".join(outcome.layers) or "built-in defaults only"
    if outcome.config is not None:
        name = outcome.config.board.name
        if config_file is None and not loader.DEFAULT_CONFIG_FILE.exists():
            layers += f" ({loader.DEFAULT_CONFIG_FILE} does not exist)"
        return True, f"configuration is valid (board {name}; layers: {layers})"
    lines = [p.render() for p in outcome.problems]
    count = len(lines)
    lines.append(f"{count} problem{'s' if count != 1 else ''} (layers: {layers})")
    return False, "\n".join(lines)


def redacted(config: schema.Config) -> dict[str, object]:
    """The config as plain TOML data under its TOML keys, secrets replaced, unset keys left out."""
    return _section(config)


def show_effective(config: schema.Config, fmt: str = "toml", *, sources: bool = False) -> str:
    """The effective configuration as `fmt` ("toml" or "json"), secrets redacted.

    With `sources`, each TOML value carries a comment naming the file and line it came from
    ("default" when no layer set it); JSON gets a separate "sources" object.
    """
    data = redacted(config)
    if fmt == "json":
        import json  # deferred: only `config show --format json` needs it (config stays light)

        document: dict[str, object] = data
        if sources:
            document = {"config": data, "sources": dict(config.origins)}
        return json.dumps(document, indent=2, sort_keys=False) + "\n"
    if fmt != "toml":
        raise ValueError(f"unknown format {fmt!r}")
    origins = config.origins if sources else None
    lines: list[str] = []
    _emit_table(data, (), lines, origins)
    return "\n".join(lines).lstrip("\n") + "\n"


def _section(section: DataclassInstance) -> dict[str, object]:
    out: dict[str, object] = {}
    for f, _tp in fields_of(type(section)):
        value: object = getattr(section, f.name)
        if value is None:
            continue
        if f.metadata.get(schema.SECRET):
            out[toml_key(f)] = REDACTED
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            out[toml_key(f)] = _section(value)
        else:
            out[toml_key(f)] = _plain(value)
    return out


def _plain(value: object) -> object:
    if isinstance(value, str):
        return redact(value, REDACTED)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def _is_table(value: object, path: tuple[str, ...]) -> TypeGuard[dict[str, object]]:
    """Sections print as [tables]; free-form data (createOptions) prints inline."""
    return isinstance(value, dict) and path[-1:] != ("createOptions",)


def _emit_table(
    table: Mapping[str, object],
    path: tuple[str, ...],
    lines: list[str],
    origins: Mapping[str, str] | None,
) -> None:
    scalars = [(k, v) for k, v in table.items() if not _is_table(v, (*path, k))]
    tables = [(k, v) for k, v in table.items() if _is_table(v, (*path, k))]
    if path and (scalars or not tables):
        lines.append("")
        lines.append(f"[{'.'.join(_key(p) for p in path)}]")
    for key, value in scalars:
        line = f"{_key(key)} = {_value(value)}"
        if origins is not None:
            dotted = ".".join((*path, key))
            line += f"  # {origins.get(dotted, 'default')}"
        lines.append(line)
    for key, value in tables:
        _emit_table(value, (*path, key), lines, origins)


def _key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else _string(key)


def _string(text: str) -> str:
    escaped = []
    for char in text:
        if char == '"':
            escaped.append('\\"')
        elif char == "\\":
            escaped.append("\\\\")
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            escaped.append(f"\\u{ord(char):04x}")
        else:
            escaped.append(char)
    return '"' + "".join(escaped) + '"'


def _value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        inner = ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items())
        return "{ " + inner + " }" if inner else "{}"
    return _string(str(value))
