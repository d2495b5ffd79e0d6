"""The project's virtualenv (.venv): pip installs every dependency pyproject.toml declares, and
tells the other steps which versions it holds."""

from __future__ import annotations

import functools
import os
import sys
import tomllib
from typing import Any

from buildkit.log import BuildError, log
from buildkit.paths import ROOT, VENV, VENV_PYTHON
from buildkit.shell import run
from buildkit.stamps import Stamp, digest

EXTRAS = ("build", "test", "dev")  # optional-dependency groups of pyproject.toml installed too


def requirements(pyproject: dict[str, Any]) -> list[str]:
    """The runtime dependencies of a parsed pyproject.toml, then those of every extra in EXTRAS."""
    project = pyproject["project"]
    wanted = list(project.get("dependencies", []))
    for extra in EXTRAS:
        wanted += project.get("optional-dependencies", {}).get(extra, [])
    return wanted


def venv_key(wanted: list[str], pyvenv_cfg: str) -> str:
    """Keyed on the requirement strings and the venv's interpreter, not on who runs build.py:
    a dependency added to pyproject.toml reinstalls into an existing venv."""
    return digest(*wanted, pyvenv_cfg)


def install_venv() -> None:
    wanted = requirements(tomllib.loads((ROOT / "pyproject.toml").read_text()))
    if VENV_PYTHON.exists() and _stamp(wanted).fresh():
        return
    if not VENV_PYTHON.exists():
        if sys.prefix != sys.base_prefix:
            raise BuildError(
                f"run build.py with the system python3, not from the virtualenv {sys.prefix}"
            )
        log(f"creating {VENV}")
        run([sys.executable, "-m", "venv", VENV])
    log("installing Python dependencies into .venv")
    quiet = ["-q"] if os.environ.get("CI") is None else []
    run([VENV_PYTHON, "-m", "pip", "install", *quiet, *wanted])
    _stamp(wanted).record()


def _stamp(wanted: list[str]) -> Stamp:
    return Stamp("venv", venv_key(wanted, (VENV / "pyvenv.cfg").read_text()))


@functools.cache
def venv_version(distribution: str) -> str:
    """The version of `distribution` installed in the venv."""
    program = f"import importlib.metadata as m; print(m.version({distribution!r}))"
    return run([VENV_PYTHON, "-c", program], capture=True).stdout.strip()


@functools.cache
def venv_python_version() -> str:
    return run([VENV_PYTHON, "-c", "import sys; print(sys.version)"], capture=True).stdout.strip()
