"""The architecture holds: import-linter's layer contracts and mypy --strict on `firmware/`.

Both run as the CI would, from the repository root with the configuration in pyproject.toml; a
failure shows the tool's own report, which names the offending import or the untyped line.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TOOLS = Path(sys.executable).parent


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=600, check=False
    )


def test_layers_import_downward_only() -> None:
    done = _run(str(TOOLS / "lint-imports"), "--no-cache")
    assert done.returncode == 0, "import contracts broken:\n" + done.stdout + done.stderr


def test_firmware_is_strictly_typed() -> None:
    done = _run(sys.executable, "-m", "mypy", "--cache-dir", str(REPO / ".cache" / "mypy"))
    assert done.returncode == 0, "mypy --strict found problems:\n" + done.stdout + done.stderr
