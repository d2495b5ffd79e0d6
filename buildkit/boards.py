"""Board files: finding boards/NAME.toml, reading it, refusing a board of another architecture."""

from __future__ import annotations

import platform
import tomllib
from pathlib import Path
from typing import Any

from buildkit.log import BuildError
from buildkit.paths import BOARDS, ROOT

# Other spellings of `uname -m` names that board files may use.
ARCH_ALIASES = {"arm64": "aarch64", "amd64": "x86_64", "armv7": "armv7l"}


def board_file(board: str) -> Path:
    path = BOARDS / f"{board}.toml"
    if not path.is_file():
        known = sorted(p.stem for p in BOARDS.glob("*.toml"))
        raise BuildError(
            f"no board file {path.relative_to(ROOT)} (known boards: {', '.join(known) or 'none'})"
        )
    return path


def board_document(board: str) -> dict[str, Any]:
    return tomllib.loads(board_file(board).read_text())


def runs_on(arch: str, machine: str) -> bool:
    """Whether a board of `arch` can be built on a `machine` (`uname -m`)."""
    return ARCH_ALIASES.get(arch, arch) == machine


def check_arch(board: str) -> None:
    """Nuitka builds for the machine it runs on: refuse a board of another architecture."""
    arch = board_document(board).get("board", {}).get("arch")
    machine = platform.machine()
    if arch and not runs_on(arch, machine):
        raise BuildError(
            f"board {board} is {arch} but this machine is {machine}: Nuitka does not "
            f"cross-compile; run build.py on an {arch} builder (or an {arch} container)"
        )
