"""Turn a merged TOML document into the `Config` tree, collecting every problem on the way.

Generic over the schema: it reads each dataclass's field types and `setting()` metadata, so a new
field or section needs no code here. Problems are reported through a callback with the dotted key,
a message and a hint; the caller places them in files and lines. A value that is wrong is reported
and replaced by its default so the walk goes on and finds the next problem.

A problem never shows the value of a secret setting (`setting(secret=True)`), nor what was written
in place of a table holding one (`device_id_pk = "<the key>"`): it names the key and the type
found. Other values are shown short, with `firmware.logs.redact` applied (a `pin-value=` in a URI).
"""

from __future__ import annotations

import dataclasses
import enum
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar, Union, runtime_checkable

from firmware.config import schema
from firmware.redaction import redact

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

#: `report(key, message, hint)`
Report = Callable[[str, str, str | None], None]
#: A schema field with its type as written in the schema (a type form: `str`, `X | None`, ...).
SchemaField = tuple[dataclasses.Field[object], object]
Section = TypeVar("Section", bound="DataclassInstance")


class _Invalid(enum.Enum):
    """A value that was reported and left out (its default fills in)."""

    INVALID = enum.auto()


_INVALID = _Invalid.INVALID
_TYPE_HINTS: dict[type, dict[str, object]] = {}
_PLACEHOLDER = re.compile(r"\{paths\.(data_dir|run_dir)\}")


@runtime_checkable
class CrossFieldRules(Protocol):
    """A section with rules across its fields (see `firmware.config.schema`)."""

    def check(self) -> Iterable[schema.Violation]: ...


def build_config(document: Mapping[str, Any], report: Report) -> schema.Config:
    """The `Config` for `document`; every problem goes to `report`, defaults fill in for them."""
    built = _build_table(schema.Config, document, "", report)
    config = built if isinstance(built, schema.Config) else schema.Config()
    return expand_placeholders(config)


def fields_of(cls: type[DataclassInstance]) -> list[SchemaField]:
    """The schema fields of a section with their resolved types (internal fields left out)."""
    hints = _TYPE_HINTS.get(cls)
    if hints is None:
        hints = typing.get_type_hints(cls)
        _TYPE_HINTS[cls] = hints
    return [
        (f, hints[f.name]) for f in dataclasses.fields(cls) if not f.metadata.get(schema.INTERNAL)
    ]


def toml_key(f: dataclasses.Field[object]) -> str:
    """The key a field has in TOML (its Python name unless the schema says otherwise)."""
    key: str | None = f.metadata.get(schema.TOML_KEY)
    return key or f.name


def section_type(tp: object) -> type[DataclassInstance] | None:
    """The dataclass a field holds (also through `X | None`), else None."""
    if _is_section(tp):
        return tp
    if _is_union(tp):
        classes = [a for a in typing.get_args(tp) if _is_section(a)]
        if len(classes) == 1:
            return classes[0]
    return None


def _is_section(tp: object) -> typing.TypeGuard[type[DataclassInstance]]:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _is_section_value(value: object) -> typing.TypeGuard[DataclassInstance]:
    return not isinstance(value, type) and dataclasses.is_dataclass(value)


def describe(tp: object) -> str:
    """What a type accepts, in words for an error message."""
    if tp is Any:
        return "any value"
    if tp is str:
        return "a string"
    if tp is bool:
        return "true or false"
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if dataclasses.is_dataclass(tp):
        return "a table"
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is Literal:
        shown = ", ".join(_show(a) for a in args)
        return shown if len(args) == 1 else f"one of {shown}"
    if origin is tuple:
        return f"an array whose items are each {describe(args[0])}"
    if origin is dict:
        return "a table" if args[1] is Any else f"a table whose values are each {describe(args[1])}"
    if _is_union(tp):
        words = [describe(a) for a in args if a is not type(None)]
        return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"
    return str(tp)


def _show(value: object) -> str:
    return f'"{value}"' if isinstance(value, str) else repr(value).lower()


def describe_value(value: object, *, secret: bool = False) -> str:
    """A TOML value's type and, unless it is `secret`, a short sight of it."""
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    kinds = {bool: "boolean", int: "integer", float: "float", str: "string"}
    kind = next((k for t, k in kinds.items() if isinstance(value, t)), type(value).__name__)
    if secret:
        return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind} ({schema.NOT_SHOWN})"
    return f"{kind} {_sight(value)}"


def _sight(value: object) -> str:
    """A short, redacted sight of a scalar for a problem's message: `"text"`, `5`, `true`."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        text = redact(value, schema.REDACTED)
        return f'"{text}"' if len(text) <= 40 else f'"{text[:37]}..."'
    return str(value)


def _is_secret(f: dataclasses.Field[object], tp: object) -> bool:
    """True if a field is secret, or is a table with a secret setting of its own."""
    if f.metadata.get(schema.SECRET):
        return True
    section = section_type(tp)
    return section is not None and any(g.metadata.get(schema.SECRET) for g, _ in fields_of(section))


def _is_union(tp: object) -> bool:
    return typing.get_origin(tp) in (Union, types.UnionType)


def _build_table(
    cls: type[DataclassInstance], table: object, path: str, report: Report, secret: bool = False
) -> DataclassInstance | _Invalid:
    if not isinstance(table, Mapping):
        got = describe_value(table, secret=secret)
        report(path, f"expected a table, got {got}", f"write [{path}] as a table")
        return _INVALID
    kwargs: dict[str, object] = {}
    known: dict[str, str] = {}
    complete = True
    found: list[str] = []

    def counted(key: str, message: str, hint: str | None) -> None:
        found.append(key)
        report(key, message, hint)

    for f, tp in fields_of(cls):
        key = toml_key(f)
        known[key] = f.name
        dotted = f"{path}.{key}" if path else key
        if key not in table:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                counted(dotted, "required key is missing", f"add {key} = ... to [{path}]")
                complete = False
            continue
        secret = _is_secret(f, tp)
        value = _convert(tp, table[key], dotted, counted, secret)
        if value is not _INVALID:
            value = _check_bounds(f, value, dotted, counted, secret)
        if value is _INVALID:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                complete = False
            continue
        kwargs[f.name] = value
    for key, value in table.items():
        if key not in known:
            report_unknown(f"{path}.{key}" if path else key, value, list(known), counted)
    if not complete:
        return _INVALID
    built = cls(**kwargs)
    if isinstance(built, CrossFieldRules) and not found:
        for violation in built.check():
            report(f"{path}.{violation.key}" if path else violation.key, *violation[1:])
    return built


def report_unknown(dotted: str, value: object, candidates: list[str], report: Report) -> None:
    """An unknown key: IoT Edge keys edgekeeper lacks get their own hint, others a suggestion."""
    for unsupported, hint in schema.IOTEDGE_UNSUPPORTED.items():
        if dotted == unsupported or dotted.startswith(unsupported + "."):
            report(dotted, "is an IoT Edge setting edgekeeper does not support", hint)
            return
    if isinstance(value, Mapping) and any(
        u.startswith(dotted + ".") for u in schema.IOTEDGE_UNSUPPORTED
    ):
        for key, inner in value.items():
            report_unknown(f"{dotted}.{key}", inner, [], report)
        return
    import difflib  # deferred: only a misspelt key needs it (config stays light to import)

    name = dotted.rpartition(".")[2]
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}?" if close else "remove it, or check its spelling"
    report(dotted, "unknown key", hint)


def _convert(
    tp: object, value: object, dotted: str, report: Report, secret: bool = False
) -> object:
    if tp is Any:
        return value
    if _is_section(tp):
        return _build_table(tp, value, dotted, report, secret)
    if _is_union(tp):
        return _convert_union(tp, value, dotted, report, secret)
    origin = typing.get_origin(tp)
    if origin is Literal:
        return _convert_choice(typing.get_args(tp), value, dotted, report, secret)
    if origin is tuple:
        return _convert_array(typing.get_args(tp)[0], value, dotted, report, secret)
    if origin is dict:
        return _convert_mapping(typing.get_args(tp)[1], value, dotted, report, secret)
    if _scalar_fits(tp, value):
        return float(value) if tp is float and isinstance(value, int) else value
    got = describe_value(value, secret=secret)
    report(dotted, f"expected {describe(tp)}, got {got}", _type_hint(tp))
    return _INVALID


def _scalar_fits(tp: object, value: object) -> bool:
    if tp is bool or isinstance(value, bool):
        return tp is bool and isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float))
    return tp in (str, int) and type(value) is tp


def _type_hint(tp: object) -> str:
    examples: dict[object, str] = {
        str: 'quote it: "..."',
        int: "write a whole number, e.g. 5",
        bool: "write true or false",
    }
    return examples.get(tp, f"use {describe(tp)}")


def _convert_union(tp: object, value: object, dotted: str, report: Report, secret: bool) -> object:
    choices = [a for a in typing.get_args(tp) if a is not type(None)]
    if len(choices) == 1:
        return _convert(choices[0], value, dotted, report, secret)
    for choice in choices:
        converted = _convert(choice, value, dotted, _silent, secret)
        if converted is not _INVALID:
            return converted
    got = describe_value(value, secret=secret)
    report(dotted, f"expected {describe(tp)}, got {got}", f"use {describe(tp)}")
    return _INVALID


def _silent(key: str, message: str, hint: str | None) -> None:
    """A report that drops problems: used while trying the alternatives of a union."""


def _convert_choice(
    options: tuple[object, ...], value: object, dotted: str, report: Report, secret: bool
) -> object:
    for option in options:
        if type(option) is type(value) and option == value:
            return value
    shown = ", ".join(_show(o) for o in options)
    hint = f"use one of {shown}" if len(options) > 1 else f"use {shown}"
    if isinstance(value, str) and not secret:
        import difflib  # deferred: only a wrong choice needs it (config stays light to import)

        words = [o for o in options if isinstance(o, str)]
        close = difflib.get_close_matches(value, words, n=1, cutoff=0.6)
        if close:
            hint = f'did you mean "{close[0]}"? Choices: {shown}'
    report(dotted, f"{describe_value(value, secret=secret)} is not allowed", hint)
    return _INVALID


def _convert_array(
    item: object, value: object, dotted: str, report: Report, secret: bool
) -> object:
    if not isinstance(value, list):
        got = describe_value(value, secret=secret)
        report(dotted, f"expected an array, got {got}", "write [ ..., ... ]")
        return _INVALID
    items = [_convert(item, v, f"{dotted}.{i}", report, secret) for i, v in enumerate(value)]
    return _INVALID if _INVALID in items else tuple(items)


def _convert_mapping(
    item: object, value: object, dotted: str, report: Report, secret: bool
) -> object:
    if not isinstance(value, Mapping):
        got = describe_value(value, secret=secret)
        report(dotted, f"expected a table, got {got}", f"write [{dotted}]")
        return _INVALID
    converted = {k: _convert(item, v, f"{dotted}.{k}", report, secret) for k, v in value.items()}
    return _INVALID if _INVALID in converted.values() else converted


def _check_bounds(
    f: dataclasses.Field[object], value: object, dotted: str, report: Report, secret: bool
) -> object:
    low: float | None = f.metadata.get(schema.MIN)
    high: float | None = f.metadata.get(schema.MAX)
    if (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and ((low is not None and value < low) or (high is not None and value > high))
    ):
        shown = f"the value ({schema.NOT_SHOWN})" if secret else _sight(value)
        report(dotted, f"{shown} is out of range", f"use a value {_span(low, high)}")
        return _INVALID
    pattern: str | None = f.metadata.get(schema.PATTERN)
    if pattern is not None and isinstance(value, str) and not re.fullmatch(pattern, value):
        shown = f"the value ({schema.NOT_SHOWN})" if secret else _sight(value)
        report(dotted, f"{shown} has the wrong form", f"e.g. {f.default!s}")
        return _INVALID
    return value


def _span(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f"from {low} to {high}"
    return f"of at least {low}" if low is not None else f"of at most {high}"


def expand_placeholders(config: schema.Config) -> schema.Config:
    """Replace `{paths.data_dir}` / `{paths.run_dir}` in every string setting."""
    values = {"data_dir": config.paths.data_dir, "run_dir": config.paths.run_dir}
    return _expand(config, lambda m: values[m.group(1)])


def _expand(section: Section, lookup: Callable[[re.Match[str]], str]) -> Section:
    changes: dict[str, object] = {}
    for f, _tp in fields_of(type(section)):
        value: object = getattr(section, f.name)
        if isinstance(value, str) and "{" in value:
            expanded = _PLACEHOLDER.sub(lookup, value)
            if expanded != value:
                changes[f.name] = expanded
        elif _is_section_value(value):
            expanded_section = _expand(value, lookup)
            if expanded_section is not value:
                changes[f.name] = expanded_section
    return dataclasses.replace(section, **changes) if changes else section
