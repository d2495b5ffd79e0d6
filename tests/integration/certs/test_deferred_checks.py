"""A start whose stored certificates are in order defers their checks, and `cryptography`, to the
first use; everything a start used to catch is still caught, then."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from firmware.certs.authority import EDGE_CA, ROOT, WORKLOAD_CA
from firmware.keys.backend import KeyKind
from firmware.store.state import StateStore
from tests.integration.certs.conftest import run

CA_NAMES = (ROOT, EDGE_CA, WORKLOAD_CA)
FACTS = ("not_before", "not_after", "sha256", "issuer_sha256")

BOOT = """
import asyncio, json, sys
from pathlib import Path
from firmware.certs.policy import CertificatePolicy
from firmware.certs.service import CertificateService
from firmware.executor import BoundedExecutor
from firmware.keys.file import FileBackend
from firmware.keys.registry import BackendRegistry
from firmware.keys.service import KeyService

async def main():
    root = Path(sys.argv[1])
    executor = BoundedExecutor()
    registry = BackendRegistry("file", {"file": lambda: FileBackend(root / "keys")})
    keys = KeyService(registry, executor)
    await keys.start()
    policy = CertificatePolicy(directory=root / "certs", hostname="testbox")
    certs = CertificateService(keys, policy, executor)
    await certs.start()
    loaded_at_start = "cryptography" in sys.modules
    listed = {info.name: info.not_after.isoformat() for info in await certs.list()}
    serials = {name: certs.certificate(name).serial_number for name in listed}
    await certs.stop()
    executor.shutdown()
    print(json.dumps({"cryptography_at_start": loaded_at_start, "serials": serials,
                      "reissued": certs.reissued}))

asyncio.run(main())
"""


def boot(root: Path) -> dict[str, object]:
    """Start a key and a certificate service over `root` in a fresh interpreter, then list."""
    done = subprocess.run(
        [sys.executable, "-c", BOOT, str(root)],
        cwd=Path(__file__).resolve().parents[3],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_a_warm_start_keeps_the_stored_certificates_without_cryptography(tmp_path: Path) -> None:
    first = boot(tmp_path)
    assert first["cryptography_at_start"] is True  # nothing stored: issued at start
    again = boot(tmp_path)
    assert again["cryptography_at_start"] is False
    assert again["serials"] == first["serials"] and set(again["serials"]) == set(CA_NAMES)
    assert again["reissued"] == {}


def test_records_without_facts_are_checked_at_start_and_given_facts(tmp_path: Path) -> None:
    first = boot(tmp_path)
    store = StateStore(tmp_path / "certs")
    for name in CA_NAMES:
        record = store.get(name)
        assert record is not None and all(fact in record for fact in FACTS)
        store.put(name, {key: value for key, value in record.items() if key not in FACTS})
    checked = boot(tmp_path)
    assert checked["cryptography_at_start"] is True
    assert checked["serials"] == first["serials"]
    assert all(fact in (store.get(name) or {}) for name in CA_NAMES for fact in FACTS)
    assert boot(tmp_path)["cryptography_at_start"] is False


def test_a_key_made_again_under_the_same_name_is_caught_on_first_use(device) -> None:
    async def scenario():
        keys, certs = await device.boot()
        before = {name: certs.certificate(name).serial_number for name in CA_NAMES}
        await certs.stop()
        await keys.delete(await keys.load("edge-ca"))
        await keys.create_key_pair("edge-ca", KeyKind.EC_P256)
        keys, certs = await device.boot()
        at_start = dict(certs.reissued)
        await certs.list()
        after = {name: certs.certificate(name).serial_number for name in CA_NAMES}
        await certs.stop()
        return before, at_start, certs.reissued, after

    before, at_start, reissued, after = run(scenario())
    assert at_start == {}
    assert set(reissued) == {EDGE_CA, WORKLOAD_CA}
    assert "key 'edge-ca' has now" in reissued[EDGE_CA]
    assert after[ROOT] == before[ROOT] and after[EDGE_CA] != before[EDGE_CA]
