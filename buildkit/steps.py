"""The order of the steps: set-up (Debian packages, then the venv), the cffi modules, then the
binary, each run holding the tree's build lock."""

from __future__ import annotations

from pathlib import Path

from buildkit.boards import check_arch
from buildkit.ffi import compile_ffi_modules
from buildkit.lock import build_lock
from buildkit.nuitka import BUILD_MODE, compile_binary
from buildkit.packages import install_debian_packages
from buildkit.venv import install_venv


def set_up() -> None:
    """Debian packages and the .venv."""
    with build_lock():
        _install_prerequisites()


def build(board: str, mode: str = BUILD_MODE) -> Path:
    """dist/<board>/edgekeeper after set-up and the cffi modules, rebuilt only when its inputs
    changed."""
    with build_lock():
        check_arch(board)
        _install_prerequisites()
        compile_ffi_modules()
        return compile_binary(board, mode)


def _install_prerequisites() -> None:
    install_debian_packages()
    install_venv()
