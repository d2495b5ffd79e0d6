"""harden_process: core limit 0/0 and not dumpable, read back from the kernel (in a child, so the
test process itself stays dumpable)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from firmware.daemon.hardening import ProcessHardening

REPO = Path(__file__).resolve().parents[3]

CHILD = """
from firmware.daemon.hardening import ProcessHardening, harden_process
before = ProcessHardening.current()
after = harden_process()
print(before.dumpable, after, ProcessHardening.current() == after, sep="|")
"""


def test_harden_process_turns_core_dumps_and_dumpability_off() -> None:
    done = subprocess.run(
        [sys.executable, "-c", CHILD],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=True,
    )
    before_dumpable, after, reread = done.stdout.strip().split("|")
    assert before_dumpable == "True"
    assert after == "ProcessHardening(core_limit=(0, 0), dumpable=False)"
    assert reread == "True"


def test_an_unhardened_process_says_so() -> None:
    state = ProcessHardening(core_limit=(0, -1), dumpable=True)
    assert state.core_dumps and state.dumpable and not state.hardened
    assert ProcessHardening(core_limit=(0, 0), dumpable=False).hardened
