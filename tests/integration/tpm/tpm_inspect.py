"""Looking into a TPM from a test: its persistent handles, and tpm2-tools run against a swtpm."""

from __future__ import annotations

import os
import subprocess

from tpm2_pytss.constants import TPM2_CAP, TPM2_HT

from firmware.tpm.connection import TpmConnection
from tests.peers.sim import Swtpm, require_program


def persistent_handles(tpm: TpmConnection) -> list[int]:
    def op(esapi):
        _, data = esapi.get_capability(TPM2_CAP.HANDLES, TPM2_HT.PERSISTENT << 24, 64)
        return [int(handle) for handle in data.data.handles]

    return tpm.run("listing persistent handles", op)


def tpm2_tool(swtpm: Swtpm, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run tpm2-tools' `tool` against `swtpm` (the caller closes its own connection first: a
    simulator serves one client at a time)."""
    program = require_program(tool, "tpm2-tools")
    environment = dict(os.environ, TPM2TOOLS_TCTI=swtpm.tcti)
    return subprocess.run(
        [program, *args], env=environment, capture_output=True, text=True, check=True, timeout=60
    )
