"""Keys and the CA survive changes of `[keys]`, against SoftHSM2 and swtpm.

Each "boot" is a new key service built from a config.toml by `registry_from_config`, over the same
data directory and state store (where the location record lives), as the daemon does after a
restart with an edited configuration.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from firmware.certs.authority import EDGE_CA, ROOT, WORKLOAD_CA
from firmware.certs.policy import CertificatePolicy
from firmware.certs.service import CertificateService
from firmware.config import load_config
from firmware.errors import DeviceError
from firmware.executor import BoundedExecutor
from firmware.keys.backend import KeyKind, SignAlgorithm
from firmware.keys.handles import HANDLE_VALIDATION_KEY
from firmware.keys.locations import KeyLocations
from firmware.keys.registry import registry_from_config
from firmware.keys.service import BackendProblem, KeyService, Placement
from firmware.store.state import StateStore

DATA = b"device identity challenge"
CA_NAMES = (ROOT, EDGE_CA, WORKLOAD_CA)


class Device:
    """One device's data dir; `boot(config)` starts a key service (and the CA) from a config."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.executor = BoundedExecutor()
        self.store = StateStore(root / "data" / "state")
        self.running: list[KeyService] = []

    def config(self, text: str = ""):
        path = self.root / "config.toml"
        path.write_text(
            f'[paths]\ndata_dir = "{self.root}/data"\nrun_dir = "{self.root}/run"\n{text}'
        )
        path.chmod(0o600)  # it may hold a PIN: the loader refuses one others can read
        return load_config(path)

    async def boot(self, text: str = "", *, start: bool = True) -> KeyService:
        keys = KeyService(
            registry_from_config(self.config(text)),
            self.executor,
            locations=KeyLocations(self.store),
        )
        self.running.append(keys)
        if start:
            await keys.start()
        return keys

    async def certs(self, keys: KeyService) -> CertificateService:
        policy = CertificatePolicy(directory=self.root / "certs", hostname="testbox")
        certs = CertificateService(keys, policy, self.executor)
        await certs.start()
        await certs.stop()
        return certs

    async def shutdown(self) -> None:
        for keys in self.running:
            await keys.close()
        self.running.clear()


@pytest.fixture
def device(tmp_path):
    made = Device(tmp_path)
    yield made
    asyncio.run(made.shutdown())
    made.executor.shutdown()


def pkcs11_section(softhsm, label: str) -> str:
    return (
        f'[keys.pkcs11]\nmodule = "{softhsm.module}"\ntoken_label = "{label}"\n'
        f'pin = "{softhsm.user_pin}"\n'
    )


async def held(keys: KeyService, backend: str) -> set[str]:
    return {k.key_id for k in (await keys.list()).keys if k.backend == backend}


@pytest.mark.softhsm
@pytest.mark.swtpm
def test_switching_the_default_backend_keeps_the_identity_key_and_the_ca(
    device, softhsm, swtpm, tmp_path
):
    token = softhsm.new_token(f"switch-{tmp_path.name[-12:]}")
    hsm = pkcs11_section(softhsm, token.label)
    tpm = f'[tpm]\ntcti = "{swtpm.tcti}"\n'

    async def scenario():
        keys = await device.boot(hsm + tpm)
        handle = await keys.create_key("device-identity", KeyKind.HMAC_SHA256)
        tag = await keys.sign(handle, SignAlgorithm.HMAC_SHA256, DATA)
        certs = await device.certs(keys)
        serials = {name: certs.certificate(name).serial_number for name in CA_NAMES}
        await device.shutdown()

        seen = {}
        for backend in ("pkcs11", "tpm"):
            keys = await device.boot(f'[keys]\ndefault_backend = "{backend}"\n{hsm}{tpm}')
            again = await keys.create_key("device-identity", KeyKind.HMAC_SHA256)
            old_handle_tag = await keys.sign(handle, SignAlgorithm.HMAC_SHA256, DATA)
            fresh = await keys.create_key(f"new-in-{backend}", KeyKind.AES_256)
            certs = await device.certs(keys)
            seen[backend] = {
                "tag": await keys.sign(again, SignAlgorithm.HMAC_SHA256, DATA),
                "old handle tag": old_handle_tag,
                "fresh in": (await keys.info(fresh)).backend,
                "held": await held(keys, backend),
                "listing": {(k.key_id, k.backend): k for k in (await keys.list()).keys},
                "serials": {name: certs.certificate(name).serial_number for name in CA_NAMES},
                "reissued": certs.reissued,
                "ca backend": {info.name: info.backend for info in await certs.list()},
            }
            await device.shutdown()
        return tag, serials, seen

    tag, serials, seen = asyncio.run(scenario())
    for backend, after in seen.items():
        assert after["tag"] == tag == after["old handle tag"], backend
        assert after["fresh in"] == backend
        assert after["held"] == {f"new-in-{backend}"}, "no key may be made again in " + backend
        assert after["serials"] == serials, "the CA must be kept"
        assert after["reissued"] == {}
        assert set(after["ca backend"].values()) == {"file"}
        listed = after["listing"][("device-identity", "file")]
        assert listed.placement is Placement.RECORDED
        assert listed.note == f"recorded here; config names {backend} for new keys"
        assert (HANDLE_VALIDATION_KEY, "file") in after["listing"]
    assert ("new-in-pkcs11", "pkcs11") in seen["tpm"]["listing"], "pkcs11 is still listed"


@pytest.mark.swtpm
def test_a_tpm_that_goes_away_fails_its_keys_loudly_and_they_work_when_it_returns(device, swtpm):
    tpm = f'[tpm]\ntcti = "{swtpm.tcti}"\n'

    async def scenario():
        keys = await device.boot(f'[keys.backends]\ndevice-identity = "tpm"\n{tpm}')
        handle = await keys.create_key("device-identity", KeyKind.HMAC_SHA256)
        tag = await keys.sign(handle, SignAlgorithm.HMAC_SHA256, DATA)
        failures = []
        swtpm.stop()
        try:
            with pytest.raises(DeviceError) as caught:
                await keys.sign(handle, SignAlgorithm.HMAC_SHA256, DATA)
            failures.append(caught.value)
            down_while_running = (keys.backends_down(), keys.keys_down())
            await device.shutdown()
            # A restart while the TPM is away, with a config that no longer names it.
            keys = await device.boot(tpm)
            for attempt in (
                keys.create_key("device-identity", KeyKind.HMAC_SHA256),
                keys.sign(handle, SignAlgorithm.HMAC_SHA256, DATA),
            ):
                with pytest.raises(DeviceError) as caught:
                    await attempt
                failures.append(caught.value)
            described = await keys.describe()
            in_file = await held(keys, "file")
        finally:
            swtpm.start()
        back = await keys.sign(handle, SignAlgorithm.HMAC_SHA256, DATA)
        return tag, back, failures, down_while_running, described, in_file, keys.keys_down()

    tag, back, failures, down_while_running, described, in_file, down_after = asyncio.run(
        scenario()
    )
    for failure in failures:
        assert failure.http_status == 503
        assert f"no TPM simulator at 127.0.0.1:{swtpm.port}" in failure.render()
    assert down_while_running[1] == {"device-identity": "tpm"}
    [problem] = [d for d in described if isinstance(d, BackendProblem)]
    assert (problem.backend, problem.keys) == ("tpm", ("device-identity",))
    assert "device-identity" not in in_file, "no key may be made elsewhere"
    assert back == tag
    assert down_after == {}


@pytest.mark.softhsm
def test_a_token_config_points_away_from_fails_its_keys_and_makes_none_elsewhere(
    device, softhsm, tmp_path
):
    token = softhsm.new_token(f"away-{tmp_path.name[-12:]}")

    async def scenario():
        keys = await device.boot(
            '[keys]\ndefault_backend = "pkcs11"\n' + pkcs11_section(softhsm, token.label)
        )
        handle = await keys.create_key("device-identity", KeyKind.HMAC_SHA256)
        tag = await keys.sign(handle, SignAlgorithm.HMAC_SHA256, DATA)
        await device.shutdown()

        away = pkcs11_section(softhsm, "no-such-token")
        failures = []
        keys = await device.boot(away, start=False)
        with pytest.raises(DeviceError) as caught:
            await keys.start()  # the handle-validation key lives on the token
        failures.append(caught.value)
        keys = await device.boot(f'[keys]\ndefault_backend = "file"\n{away}', start=False)
        with pytest.raises(DeviceError) as caught:
            await keys.start()
        failures.append(caught.value)
        in_file = await held(keys, "file")
        status = keys.backends_down()
        await device.shutdown()

        keys = await device.boot(pkcs11_section(softhsm, token.label))
        again = await keys.load("device-identity")
        return (
            tag,
            await keys.sign(again, SignAlgorithm.HMAC_SHA256, DATA),
            failures,
            in_file,
            status,
        )

    tag, back, failures, in_file, status = asyncio.run(scenario())
    for failure in failures:
        assert failure.http_status == 503 and "no-such-token" in failure.render()
    assert in_file == set(), "neither the identity nor the validation key may appear in file"
    assert "no-such-token" in status["pkcs11"]
    assert back == tag


def test_a_ca_whose_key_is_gone_is_issued_again_loudly_and_counted(device, caplog):
    async def scenario():
        keys = await device.boot()
        first = await device.certs(keys)
        serials = {name: first.certificate(name).serial_number for name in CA_NAMES}
        await keys.delete(await keys.load("edge-ca"))
        await device.shutdown()
        keys = await device.boot()
        again = await device.certs(keys)
        return serials, again, {name: again.certificate(name).serial_number for name in CA_NAMES}

    caplog.set_level(logging.WARNING, logger="edgekeeper.certs")
    serials, again, serials_again = asyncio.run(scenario())
    assert serials_again[ROOT] == serials[ROOT]
    assert serials_again[EDGE_CA] != serials[EDGE_CA]
    assert set(again.reissued) == {EDGE_CA, WORKLOAD_CA}
    assert "key 'edge-ca' has now" in again.reissued[EDGE_CA]
    assert again.describe()["reissued_count"] == 2
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(
        m.startswith("issued certificate edge-ca again: the stored one is for") for m in warned
    )
