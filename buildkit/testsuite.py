"""`build.py test`: pytest in the venv against the freshly built sim binary."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from buildkit.log import log
from buildkit.paths import ROOT, VENV_PYTHON
from buildkit.steps import build


def pytest_arguments(extra: list[str], root: Path = ROOT) -> list[str]:
    """pytest's arguments: `extra` as given, after the default `tests` unless one of them names
    a path (`tests/x.py`, `tests/x.py::test_y`) under `root`, which then replaces it."""
    names_paths = any(
        not arg.startswith("-") and (root / arg.split("::")[0]).exists() for arg in extra
    )
    return [*([] if names_paths else ["tests"]), *extra]


def run_tests(extra: list[str]) -> int:
    """pytest's exit code; EDGEKEEPER_BINARY names the binary, SOFTHSM2_CONF is left to the
    tests' own token."""
    binary = build("sim")
    env = dict(os.environ, EDGEKEEPER_BINARY=str(binary))
    env.pop("SOFTHSM2_CONF", None)
    argv = [str(VENV_PYTHON), "-m", "pytest", *pytest_arguments(extra)]
    log(" ".join(argv))
    return subprocess.run(argv, cwd=ROOT, env=env, check=False).returncode
