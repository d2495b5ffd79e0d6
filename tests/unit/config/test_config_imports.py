"""Config code stays light: loading and showing the config imports no heavy module."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("asyncio", "cryptography", "json", "difflib", "ssl", "tpm2_pytss", "serial", "cffi")

PROBE = """
import sys
from firmware.config import load_config
from firmware.config.report import show_effective
show_effective(load_config(None, "sim"))
print(" ".join(sorted(sys.modules)))
"""


def test_loading_and_showing_imports_nothing_heavy() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=60
    )
    loaded = set(done.stdout.split())
    assert "firmware.config.schema" in loaded
    heavy = [m for m in loaded if m.split(".")[0] in HEAVY]
    assert heavy == []
