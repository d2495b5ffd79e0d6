"""Module identities: generation ids, persistence, keys derived in the key service."""

from __future__ import annotations

import asyncio
import hmac
from pathlib import Path

import pytest

from firmware.errors import Conflict
from firmware.executor import BoundedExecutor
from firmware.identity.errors import IdentityExists, IdentityNotFound, InvalidModuleId
from firmware.identity.model import ModuleIdentity, check_module_id
from firmware.identity.modules import MASTER_KEY, STATE_NAME, ModuleIdentities, derivation_label
from firmware.keys.backend import SignAlgorithm
from firmware.keys.file import FileBackend
from firmware.keys.registry import BackendRegistry
from firmware.keys.service import KeyService
from firmware.store.state import StateStore


class Device:
    def __init__(self, root: Path, executor: BoundedExecutor) -> None:
        self.root = root
        self.executor = executor

    async def boot(self) -> tuple[KeyService, ModuleIdentities]:
        registry = BackendRegistry("file", {"file": lambda: FileBackend(self.root / "keys")})
        keys = KeyService(registry, self.executor)
        await keys.start()
        identities = ModuleIdentities(keys, StateStore(self.root / "state"), self.executor.run)
        await identities.start()
        return keys, identities


@pytest.fixture
def device(tmp_path: Path):
    executor = BoundedExecutor()
    yield Device(tmp_path, executor)
    executor.shutdown()


async def _digest(keys: KeyService, handle, data: bytes) -> bytes:
    return await keys.sign(handle, SignAlgorithm.HMAC_SHA256, data)


def test_master_key_is_created_and_module_key_is_its_derived_child(device: Device) -> None:
    async def scenario() -> None:
        keys, identities = await device.boot()
        identity = await identities.create("tempSensor")
        assert identity.document() == {
            "moduleId": "tempSensor",
            "managedBy": "iotedge",
            "generationId": identity.generation_id,
            "authType": "sas",
        }
        master = await keys.load(MASTER_KEY)
        expected_handle = await keys.derive(
            master, derivation_label("tempSensor", identity.generation_id)
        )
        handle = await identities.key("tempSensor", identity.generation_id)
        data = b"sr=hub%2Fdevices%2Fd%2Fmodules%2FtempSensor\n1700000000"
        assert await _digest(keys, handle, data) == await _digest(keys, expected_handle, data)
        await keys.close()

    asyncio.run(scenario())


def test_identities_persist_and_keys_are_stable_across_restarts(device: Device) -> None:
    async def scenario() -> None:
        keys, identities = await device.boot()
        first = await identities.create("a", "me")
        digest = await _digest(keys, await identities.key("a", first.generation_id), b"x")
        await keys.close()
        keys, again = await device.boot()
        assert again.list() == [first]
        assert await _digest(keys, await again.key("a", first.generation_id), b"x") == digest
        await keys.close()

    asyncio.run(scenario())


def test_new_generation_gets_a_new_key_and_old_generation_is_refused(device: Device) -> None:
    async def scenario() -> None:
        keys, identities = await device.boot()
        old = await identities.create("mod")
        old_digest = await _digest(keys, await identities.key("mod", old.generation_id), b"d")
        await identities.delete("mod")
        new = await identities.create("mod")
        assert new.generation_id != old.generation_id
        new_digest = await _digest(keys, await identities.key("mod", new.generation_id), b"d")
        assert new_digest != old_digest
        with pytest.raises(IdentityNotFound, match="generation"):
            await identities.key("mod", old.generation_id)
        await keys.close()

    asyncio.run(scenario())


def test_two_modules_have_different_keys(device: Device) -> None:
    async def scenario() -> None:
        keys, identities = await device.boot()
        a = await identities.create("a")
        b = await identities.create("b")
        da = await _digest(keys, await identities.key("a", a.generation_id), b"m")
        db = await _digest(keys, await identities.key("b", b.generation_id), b"m")
        assert not hmac.compare_digest(da, db)
        with pytest.raises(IdentityNotFound):
            await identities.key("a", b.generation_id)
        await keys.close()

    asyncio.run(scenario())


def test_create_update_delete_errors(device: Device) -> None:
    async def scenario() -> None:
        keys, identities = await device.boot()
        created = await identities.create("m")
        with pytest.raises(IdentityExists):
            await identities.create("m")
        assert (await identities.ensure("m")) == created
        updated = await identities.update("m", "someone", created.generation_id)
        assert updated == ModuleIdentity("m", created.generation_id, "someone")
        with pytest.raises(IdentityNotFound):
            await identities.update("m", "x", "0")
        with pytest.raises(IdentityNotFound):
            await identities.delete("nope")
        with pytest.raises(InvalidModuleId, match="moduleId"):
            await identities.create("../etc")
        await identities.delete("m")
        assert identities.list() == []
        assert (await identities.ensure("m")).generation_id != created.generation_id
        await keys.close()

    asyncio.run(scenario())


def test_system_identities_are_never_deleted(device: Device) -> None:
    async def scenario() -> None:
        keys, identities = await device.boot()
        hub = await identities.create("$edgeHub")
        with pytest.raises(Conflict, match="belongs to the device"):
            await identities.delete("$edgeHub")
        assert identities.list() == [hub]
        await keys.close()

    asyncio.run(scenario())


def test_state_document_holds_no_key_material(device: Device) -> None:
    async def scenario() -> None:
        keys, identities = await device.boot()
        await identities.create("m")
        await keys.close()

    asyncio.run(scenario())
    doc = StateStore(device.root / "state").get(STATE_NAME)
    assert doc is not None
    assert set(doc["identities"][0]) == {"moduleId", "managedBy", "generationId", "authType"}
    assert oct((device.root / "state" / f"{STATE_NAME}.json").stat().st_mode & 0o777) == "0o600"


@pytest.mark.parametrize("good", ["edgeHub", "$edgeAgent", "temp-sensor_1.2", "a" * 63])
def test_module_ids_accepted(good: str) -> None:
    assert check_module_id(good) == good


@pytest.mark.parametrize(
    "bad", ["", "../x", "a/b", "a" * 64, "-x", "$", "x y", 7, None, "edgeHub\n", "$$x", "$-x"]
)
def test_module_ids_refused(bad: object) -> None:
    with pytest.raises(InvalidModuleId, match="moduleId"):
        check_module_id(bad)
