"""Where the build reads and writes: the source tree and the directories build.py owns in it."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RECIPE = (ROOT / "build.py", Path(__file__).resolve().parent)  # build.py and this package
VENV = ROOT / ".venv"
VENV_PYTHON = VENV / "bin" / "python"
CACHE = ROOT / ".cache"
STAMPS = CACHE / "stamps"
SIM_DIR = ROOT / ".sim"
DIST = ROOT / "dist"
BOARDS = ROOT / "boards"
