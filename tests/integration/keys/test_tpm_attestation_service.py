"""The key service hands DPS TPM attestation its one TPM connection, even when no key is in the
TPM: a registration's EK, SRK, challenge import and TPM HMAC, beside file keys that keep working,
on a swtpm of its own (the flow persists keys)."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from firmware.keys.backend import KeyBackend, KeyKind, SignAlgorithm
from firmware.keys.errors import KeyBackendUnavailable
from firmware.keys.file import FileBackend
from firmware.keys.registry import BackendRegistry
from firmware.keys.service import KeyService
from firmware.keys.tpm import TpmBackend
from tests.peers.sim import MissingComponent, ServiceFailed, Swtpm
from tests.peers.tpm_challenge import make_challenge
from tests.unit.keys.conftest import ThreadExecutor

pytestmark = pytest.mark.swtpm

DPS_KEY = b"d" * 32
SCOPE = b"0ne00000000/registrations/device\n1700000000"


@pytest.fixture
def own_swtpm(tmp_path):
    tpm = Swtpm(tmp_path / "swtpm")
    try:
        tpm.start()
    except (MissingComponent, ServiceFailed) as error:
        pytest.fail(str(error), pytrace=False)
    yield tpm
    tpm.stop()


async def test_dps_registration_through_the_key_service(own_swtpm, tmp_path):
    executor = ThreadExecutor()
    factories = {
        "file": lambda: FileBackend(tmp_path / "keys"),
        "tpm": lambda: TpmBackend(own_swtpm.tcti, tmp_path / "tpm-keys"),
    }
    service = KeyService(BackendRegistry("file", factories), executor)
    await service.start()
    try:
        mac = await service.create_key("mac", KeyKind.HMAC_SHA256)
        tag = await service.sign(mac, SignAlgorithm.HMAC_SHA256, SCOPE)
        attestation = await service.tpm_attestation(0x100)
        ek = await executor.run(attestation.endorsement_key)
        srk = await executor.run(attestation.storage_root_key)
        handle = await executor.run(attestation.import_key, make_challenge(ek, srk, DPS_KEY))
        signature = await executor.run(attestation.hmac, SCOPE, handle)
        assert signature == hmac.new(DPS_KEY, SCOPE, hashlib.sha256).digest()
        await executor.run(attestation.commit, handle)
        again = await service.tpm_attestation(0x100)  # what a later registration asks for
        assert await executor.run(again.hmac, SCOPE) == signature
        assert await service.sign(mac, SignAlgorithm.HMAC_SHA256, SCOPE) == tag
    finally:
        await service.close()
        executor.close()


async def test_no_tpm_is_the_backends_error(tmp_path):
    def no_tpm() -> KeyBackend:
        raise KeyBackendUnavailable("the tpm key backend has no TPM configured", hint="set it")

    executor = ThreadExecutor()
    factories = {"file": lambda: FileBackend(tmp_path / "keys"), "tpm": no_tpm}
    service = KeyService(BackendRegistry("file", factories), executor)
    await service.start()
    try:
        with pytest.raises(KeyBackendUnavailable, match="no TPM configured"):
            await service.tpm_attestation(0x100)
        assert "tpm" in service.backends_down()
    finally:
        await service.close()
        executor.close()
