"""docs/configuration.md documents every section and key of the schema."""

from __future__ import annotations

from pathlib import Path

from firmware.config import schema
from firmware.config.validate import fields_of, section_type, toml_key

DOC = Path(__file__).resolve().parents[3] / "docs" / "configuration.md"


def _sections(cls: type, path: str) -> list[tuple[str, list[str]]]:
    keys: list[str] = []
    found: list[tuple[str, list[str]]] = []
    for f, tp in fields_of(cls):
        inner = section_type(tp)
        dotted = f"{path}.{toml_key(f)}" if path else toml_key(f)
        if inner is None:
            keys.append(toml_key(f))
        else:
            found.extend(_sections(inner, dotted))
    return [(path, keys), *found] if keys else found


def test_every_key_has_a_row_under_its_section() -> None:
    text = DOC.read_text(encoding="utf-8")
    missing = []
    for path, keys in _sections(schema.Config, ""):
        heading = f"### `[{path}]`" if path else "### Top level"
        if heading not in text:
            missing.append(heading)
            continue
        body = text.split(heading, 1)[1].split("\n### ", 1)[0]
        missing += [f"{path}.{key}" for key in keys if f"| `{key}` |" not in body]
    assert missing == [], "add these to docs/configuration.md's reference tables"
