"""The compiled PKCS#11 binding for the tests that call into it, built first when missing or stale.

The binding is built the way build.py and developers build it (`python ffi/pkcs11_build.py`); the
check runs in a subprocess so a stale extension is never loaded into the test process.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[4]
BUILD_SCRIPT = REPO / "ffi" / "pkcs11_build.py"
SOURCES = (BUILD_SCRIPT, REPO / "firmware" / "_ffi" / "__init__.py")


def _fresh() -> bool:
    built = sorted((REPO / "firmware" / "_ffi").glob("_pkcs11*.so"))
    if not built or any(built[0].stat().st_mtime < source.stat().st_mtime for source in SOURCES):
        return False
    check = subprocess.run(
        [sys.executable, "-c", "from firmware._ffi import load_pkcs11; load_pkcs11()"],
        cwd=REPO,
        capture_output=True,
        check=False,
    )
    return check.returncode == 0


def ensure_pkcs11_binding() -> None:
    """Build firmware/_ffi/_pkcs11*.so unless an up-to-date one is there; fail saying why."""
    if _fresh():
        return
    build = subprocess.run(
        [sys.executable, str(BUILD_SCRIPT)], cwd=REPO, capture_output=True, text=True, check=False
    )
    if build.returncode != 0:
        pytest.fail(
            "could not build the PKCS#11 binding (`python ffi/pkcs11_build.py`; needs gcc and "
            f"libc6-dev):\n{build.stdout}{build.stderr}",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def pkcs11_binding() -> None:
    ensure_pkcs11_binding()
