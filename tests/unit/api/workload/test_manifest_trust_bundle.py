"""`GET /manifest-trust-bundle` as IoT Edge answers it: 200 with an empty certificate when no
manifest trust bundle is configured (edgeAgent and edgeHub 1.2+ read "" as "manifest signing
off" and stop at start on anything else), the configured PEM otherwise, at every api-version as
edgelet serves it; never "" for a bundle that is configured but cannot be read."""

from __future__ import annotations

from pathlib import Path

import pytest

from firmware.api import versions
from tests.unit.api.workload.workload_rig import workload_rig

PEM = "-----BEGIN CERTIFICATE-----\nMIIBmanifestroot\n-----END CERTIFICATE-----\n"
LISTENER = "workload:edgeAgent"


@pytest.mark.parametrize("version", versions.SUPPORTED)
async def test_no_bundle_configured_is_an_empty_certificate(tmp_path: Path, version: str) -> None:
    async with workload_rig(tmp_path) as rig:
        answer = await rig.call("GET", "/manifest-trust-bundle", listener=LISTENER, version=version)
        assert answer.status == 200, answer.json()
        assert answer.json() == {"certificate": ""}


async def test_a_configured_bundle_is_answered_as_written(tmp_path: Path) -> None:
    bundle = tmp_path / "manifest-ca.pem"
    bundle.write_text(PEM)
    async with workload_rig(tmp_path, policy={"manifest_trust_bundle": bundle}) as rig:
        answer = await rig.call("GET", "/manifest-trust-bundle", listener=LISTENER)
        assert answer.status == 200, answer.json()
        assert answer.json() == {"certificate": PEM}


async def test_a_configured_bundle_that_cannot_be_read_is_an_error_not_empty(
    tmp_path: Path,
) -> None:
    # An empty answer would turn manifest signing off: a missing file must not do that silently.
    missing = tmp_path / "gone.pem"
    async with workload_rig(tmp_path, policy={"manifest_trust_bundle": missing}) as rig:
        answer = await rig.call("GET", "/manifest-trust-bundle", listener=LISTENER)
        assert answer.status >= 400
        assert "certificate" not in answer.json()
        assert str(missing) in answer.json()["message"]
