"""The daemon services of keys and certs load no crypto library and no backend until used."""

from __future__ import annotations

import subprocess
import sys

HEAVY = (
    "cryptography",
    "tpm2_pytss",
    "firmware.keys.pkcs11",
    "firmware.keys.tpm",
    "firmware.keys.file",
    "firmware.certs.service",
    "firmware.certs.signing",
)


def test_daemon_services_import_nothing_heavy():
    code = (
        "import sys\n"
        "import firmware.keys.daemon, firmware.certs.daemon\n"
        f"print([m for m in sys.modules if m.startswith({HEAVY!r})])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
