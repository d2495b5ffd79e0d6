"""Board files: finding the one to use by name or path, and listing the known ones.

A board is a config layer (the same schema plus `[board]`). It comes from, in this order: a path
given with `--board FILE`; the board compiled into the binary (`firmware/board.toml`, placed by
`build.py` with Nuitka's --include-data-files) when no name is given or the name is its name; the
source tree's `boards/<name>.toml`. `EDGEKEEPER_BOARD` names the board when `--board` is not given.
A board name follows the one name rule (`firmware.names`), checked on the whole name, so it never
names a path outside `boards/`.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from firmware.config.errors import ConfigProblem
from firmware.names import is_module_name

#: The board `build.py` compiles into the binary (absent when running from source).
COMPILED_BOARD = Path(__file__).resolve().parent.parent / "board.toml"
#: The source tree's board directory (the repository root is the parent of `firmware/`).
SOURCE_BOARDS = Path(__file__).resolve().parent.parent.parent / "boards"
BOARD_ENV = "EDGEKEEPER_BOARD"


@dataclass(frozen=True)
class BoardFile:
    """A board file that can be named with `--board`."""

    name: str
    path: Path
    compiled: bool
    arch: str
    description: str


def resolve_board(board: str | Path | None) -> Path | ConfigProblem | None:
    """The board file to load, None for no board layer, or the problem with the name given."""
    if isinstance(board, Path) or (
        isinstance(board, str) and ("/" in board or board.endswith(".toml"))
    ):
        path = Path(board)
        if not path.is_file():
            return ConfigProblem(
                str(path),
                None,
                "board",
                "board file not found",
                "give the path of a board TOML file, or a board name",
            )
        return path
    name = board or os.environ.get(BOARD_ENV) or None
    compiled = compiled_board_name()
    if name is None:
        return COMPILED_BOARD if compiled is not None else None
    if name == compiled:
        return COMPILED_BOARD
    candidate = SOURCE_BOARDS / f"{name}.toml"
    if is_module_name(name) and candidate.is_file():
        return candidate
    known = ", ".join(b.name for b in list_boards()) or "none"
    return ConfigProblem(
        None,
        None,
        "board",
        f"unknown board {name!r}",
        f"known boards: {known}; or give the path of a board TOML file",
    )


def list_boards() -> list[BoardFile]:
    """The compiled-in board (if any) and the source tree's boards, by name."""
    boards: dict[str, BoardFile] = {}
    if SOURCE_BOARDS.is_dir():
        for path in sorted(SOURCE_BOARDS.glob("*.toml")):
            if not path.name.startswith("."):
                boards[path.stem] = _describe(path, path.stem, compiled=False)
    compiled = compiled_board_name()
    if compiled is not None:
        boards[compiled] = _describe(COMPILED_BOARD, compiled, compiled=True)
    return [boards[name] for name in sorted(boards)]


def compiled_board_name() -> str | None:
    """The name of the board built into the binary, None when running from source."""
    if not COMPILED_BOARD.is_file():
        return None
    return str(_board_table(COMPILED_BOARD).get("name") or "compiled")


def _describe(path: Path, name: str, *, compiled: bool) -> BoardFile:
    table = _board_table(path)
    return BoardFile(
        name=name,
        path=path,
        compiled=compiled,
        arch=str(table.get("arch", "")),
        description=str(table.get("description", "")),
    )


def _board_table(path: Path) -> dict[str, object]:
    """The `[board]` table of a file, or empty when it cannot be read (validation says why)."""
    try:
        board = tomllib.loads(path.read_text(encoding="utf-8")).get("board", {})
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return {}
    return board if isinstance(board, dict) else {}
