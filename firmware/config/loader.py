"""Loading the configuration: read the layers, merge them, validate, and place every problem.

Layers, lowest first: the schema's defaults, the board file, `/etc/edgekeeper/config.toml` (or the
file given with `--config`), then `config.d/*.toml` beside it in name order. A later layer overrides
the keys of earlier ones: tables merge key by key, scalars and arrays replace. IoT Edge spellings
(`[moby_runtime]`, `homedir`, ...) are turned into edgekeeper's keys per layer, before merging.

A file that holds a secret (`firmware.config.secrets`) must be readable by its owner alone; its
mode is taken with `fstat` on the file as it is read, so what is checked is what was read.

`evaluate()` is the sans-IO core (texts in, `Config` or problems out); `load_config()` and
`validate_files()` add the file reading.
"""

from __future__ import annotations

import os
import re
import stat
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from firmware.config import boards, schema
from firmware.config.boards import resolve_board
from firmware.config.errors import ConfigProblem, ConfigProblems
from firmware.config.locate import key_lines
from firmware.config.secrets import exposed, secret_keys
from firmware.config.validate import build_config, fields_of, section_type, toml_key

DEFAULT_CONFIG_FILE = Path("/etc/edgekeeper/config.toml")
DROP_IN_DIR = "config.d"

_SYNTAX_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)")


@dataclass(frozen=True)
class LayerSource:
    """One layer's text and where it came from (`name` is the file as shown to people).

    `mode` holds the permission bits of the file it was read from (None: not read from a file).
    """

    name: str
    text: str
    board: bool = False
    mode: int | None = None


@dataclass(frozen=True)
class Evaluation:
    """The outcome of loading: the config when there are no problems, else the problems."""

    config: schema.Config | None
    problems: tuple[ConfigProblem, ...]
    layers: tuple[str, ...] = ()


@dataclass
class _Merge:
    document: dict[str, Any] = field(default_factory=dict)
    origins: dict[str, tuple[str, int | None]] = field(default_factory=dict)
    problems: list[ConfigProblem] = field(default_factory=list)

    def place(self, key: str) -> tuple[str | None, int | None]:
        """The file and line a key's value came from, else the nearest enclosing table's."""
        parts = key.split(".")
        while parts:
            origin = self.origins.get(".".join(parts))
            if origin is not None:
                return origin
            parts.pop()
        return None, None


def load_config(config_file: Path | None = None, board: str | Path | None = None) -> schema.Config:
    """The effective configuration; raises `ConfigProblems` listing every problem found."""
    outcome = evaluate(*read_sources(config_file, board))
    if outcome.config is None:
        raise ConfigProblems(outcome.problems)
    return outcome.config


def validate_files(config_file: Path | None = None, board: str | Path | None = None) -> Evaluation:
    """Load and validate without raising: for `config validate`."""
    return evaluate(*read_sources(config_file, board))


def read_sources(
    config_file: Path | None, board: str | Path | None
) -> tuple[list[LayerSource], list[ConfigProblem]]:
    """Read the board file, the config file and its drop-ins; unreadable ones become problems."""
    sources: list[LayerSource] = []
    problems: list[ConfigProblem] = []
    board_file = resolve_board(board)
    if isinstance(board_file, ConfigProblem):
        problems.append(board_file)
    elif board_file is not None:
        _read(board_file, sources, problems, board=True, shown=_board_shown(board_file))
    if config_file is None and not DEFAULT_CONFIG_FILE.exists():
        return sources, problems
    main = Path(config_file) if config_file is not None else DEFAULT_CONFIG_FILE
    _read(main, sources, problems)
    drop_ins = main.parent / DROP_IN_DIR
    if drop_ins.is_dir():
        for path in sorted(drop_ins.glob("*.toml")):
            if not path.name.startswith("."):
                _read(path, sources, problems)
    return sources, problems


def _board_shown(path: Path) -> str:
    """The compiled-in board is named as such, not by the temporary path it unpacks to."""
    if path == boards.COMPILED_BOARD:
        return f"<board {boards.compiled_board_name()} built into the binary>"
    return str(path)


def _read(
    path: Path,
    sources: list[LayerSource],
    problems: list[ConfigProblem],
    *,
    board: bool = False,
    shown: str | None = None,
) -> None:
    what = "board file" if board else "config file"
    shown = shown or str(path)
    try:
        with path.open("rb") as handle:
            mode = stat.S_IMODE(os.fstat(handle.fileno()).st_mode)
            data = handle.read()
    except FileNotFoundError:
        fix = "check the --board path" if board else "create it or give --config FILE"
        problems.append(ConfigProblem(shown, None, "", f"{what} not found", fix))
        return
    except IsADirectoryError:
        problems.append(ConfigProblem(shown, None, "", f"{what} is a directory", "name a file"))
        return
    except OSError as err:
        problems.append(
            ConfigProblem(
                shown,
                None,
                "",
                f"{what} cannot be read: {err.strerror}",
                "check its owner and mode; the daemon reads it as root",
            )
        )
        return
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        problems.append(
            ConfigProblem(shown, line, "", f"{what} is not UTF-8 text", "save it as UTF-8")
        )
        return
    sources.append(LayerSource(shown, text, board=board, mode=mode))


def evaluate(sources: Sequence[LayerSource], problems: Sequence[ConfigProblem] = ()) -> Evaluation:
    """Merge and validate the layers (sans-IO); `problems` are earlier ones (unreadable files)."""
    merge = _Merge(problems=list(problems))
    for source in sources:
        _add_layer(merge, source)
    order = {source.name: index for index, source in enumerate(sources)}
    built: list[ConfigProblem] = []

    def report(key: str, message: str, hint: str | None) -> None:
        file, line = merge.place(key)
        built.append(ConfigProblem(file, line, key, message, hint))

    config = build_config(merge.document, report)
    found = tuple(
        sorted(merge.problems + built, key=lambda p: (order.get(p.file or "", -1), p.line or 0))
    )
    names = tuple(source.name for source in sources)
    if found:
        return Evaluation(None, found, names)
    origins = {key: _show_origin(origin) for key, origin in merge.origins.items()}
    return Evaluation(replace(config, origins=origins), (), names)


def _show_origin(origin: tuple[str, int | None]) -> str:
    file, line = origin
    return file if line is None else f"{file}:{line}"


def _add_layer(merge: _Merge, source: LayerSource) -> None:
    try:
        document = tomllib.loads(source.text)
    except tomllib.TOMLDecodeError as err:
        text = str(err)
        match = _SYNTAX_POSITION.search(text)
        line = int(match.group(1)) if match else None
        where = f" at column {match.group(2)}" if match else ""
        message = _SYNTAX_POSITION.sub("", text)
        merge.problems.append(
            ConfigProblem(
                source.name, line, "", f"TOML syntax error: {message}", f"fix the syntax{where}"
            )
        )
        return
    lines = key_lines(source.text)
    renames: list[tuple[str, str]] = []

    def problem(key: str, message: str, hint: str) -> None:
        merge.problems.append(ConfigProblem(source.name, _line(lines, key), key, message, hint))

    _rename_iotedge_keys(document, renames, problem)
    _apply_aliases(document, schema.Config, "", renames, problem)
    if not source.board:
        _refuse_board_only(document, problem)
    if source.mode is not None and exposed(source.mode):
        _refuse_exposed_secrets(document, source, problem)
    for old, new in renames:
        for key in [k for k in lines if k == old or k.startswith(old + ".")]:
            lines.setdefault(new + key[len(old) :], lines[key])
    for key, value in _walk(document):
        if not isinstance(value, Mapping):
            for stale in [k for k in merge.origins if k.startswith(key + ".")]:
                del merge.origins[stale]
        merge.origins[key] = (source.name, _line(lines, key))
    _deep_merge(merge.document, document)


def _line(lines: Mapping[str, int], key: str) -> int | None:
    parts = key.split(".")
    while parts:
        line = lines.get(".".join(parts))
        if line is not None:
            return line
        parts.pop()
    return None


def _walk(table: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in table.items():
        dotted = f"{prefix}.{key}" if prefix else key
        yield dotted, value
        if isinstance(value, Mapping):
            yield from _walk(value, dotted)


def _deep_merge(base: dict[str, Any], layer: Mapping[str, Any]) -> None:
    for key, value in layer.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _deep_merge(base[key], value)
        else:
            base[key] = value


_Problem = Callable[[str, str, str], None]


def _rename_iotedge_keys(
    document: dict[str, Any], renames: list[tuple[str, str]], problem: _Problem
) -> None:
    for old, new in schema.IOTEDGE_RENAMED.items():
        *old_parents, old_key = old.split(".")
        holder = _table_at(document, old_parents)
        if holder is None or old_key not in holder:
            continue
        *new_parents, new_key = new.split(".")
        target = _table_at(document, new_parents, create=True)
        if target is None or new_key in target:
            problem(old, f"is IoT Edge's spelling of {new}, which is also set", f"keep only {new}")
            continue
        target[new_key] = holder.pop(old_key)
        renames.append((old, new))
        if not holder and old_parents:
            _table_at(document, old_parents[:-1]).pop(old_parents[-1])  # type: ignore[union-attr]


def _table_at(
    document: dict[str, Any], parts: list[str], *, create: bool = False
) -> dict[str, Any] | None:
    table = document
    for part in parts:
        if part not in table and create:
            table[part] = {}
        inner = table.get(part)
        if not isinstance(inner, dict):
            return None
        table = inner
    return table


def _apply_aliases(
    table: dict[str, Any],
    cls: type,
    path: str,
    renames: list[tuple[str, str]],
    problem: _Problem,
) -> None:
    for f, tp in fields_of(cls):
        key = toml_key(f)
        dotted = f"{path}.{key}" if path else key
        for alias in f.metadata.get(schema.ALIASES, ()):
            if alias not in table:
                continue
            alias_dotted = f"{path}.{alias}" if path else alias
            if key in table:
                problem(alias_dotted, f"both {key} and its alias {alias} are set", "keep one")
                table.pop(alias)
                continue
            table[key] = table.pop(alias)
            renames.append((alias_dotted, dotted))
        section = section_type(tp)
        if section is not None and isinstance(table.get(key), dict):
            _apply_aliases(table[key], section, dotted, renames, problem)


def _refuse_exposed_secrets(
    document: Mapping[str, Any], source: LayerSource, problem: _Problem
) -> None:
    secrets = secret_keys(document)
    if secrets:
        problem(
            secrets[0],
            f"the file holds secrets ({', '.join(secrets)}) but its group or others may read "
            f"it (mode {source.mode:04o})",
            f"run `chmod 600 {source.name}`",
        )


def _refuse_board_only(document: dict[str, Any], problem: _Problem) -> None:
    for f, _tp in fields_of(schema.Config):
        if f.metadata.get(schema.BOARD_ONLY) and toml_key(f) in document:
            document.pop(toml_key(f))
            problem(
                toml_key(f),
                f"[{toml_key(f)}] belongs in a board file, not in a config file",
                "move it to boards/<name>.toml, or remove it",
            )
