"""Module identities on the hub: create then key (IoT Edge's order), delete, intents that a kill
leaves behind cleaned up at the next start, reconcile after provisioning, clear on a move."""

from __future__ import annotations

import asyncio
import hmac
from pathlib import Path

import pytest

from firmware.executor import BoundedExecutor
from firmware.identity.errors import CloudUnreachable
from firmware.identity.modules import (
    MASTER_KEY,
    ModuleCloud,
    ModuleIdentities,
    ModuleKey,
    derivation_label,
)
from firmware.keys.backend import SignAlgorithm
from firmware.keys.file import FileBackend
from firmware.keys.registry import BackendRegistry
from firmware.keys.service import KeyService
from firmware.store.state import StateStore


class FakeHub:
    """The hub's module registry of one device, recording every call."""

    def __init__(self) -> None:
        self.modules: dict[str, dict[str, object]] = {}
        self.calls: list[tuple[str, str]] = []
        self.fail_on: str | None = None
        self._next = 1000

    async def create(self, module_id: str, managed_by: str) -> str:
        self._call("create", module_id)
        if module_id not in self.modules:
            self._next += 1
            self.modules[module_id] = {"generation": str(self._next), "keys": None}
        return str(self.modules[module_id]["generation"])

    async def set_keys(
        self, module_id: str, primary: bytes, secondary: bytes, managed_by: str
    ) -> None:
        self._call("set_keys", module_id)
        self.modules[module_id]["keys"] = (primary, secondary)

    async def delete(self, module_id: str) -> None:
        self._call("delete", module_id)
        self.modules.pop(module_id, None)

    async def generations(self) -> dict[str, str]:
        self._call("list", "")
        return {m: str(doc["generation"]) for m, doc in self.modules.items()}

    def _call(self, what: str, module_id: str) -> None:
        self.calls.append((what, module_id))
        if self.fail_on == what:
            raise CloudUnreachable(f"hub unreachable during {what}")


def _typed(hub: FakeHub) -> ModuleCloud:
    return hub


class Device:
    def __init__(self, root: Path, executor: BoundedExecutor, hub: FakeHub) -> None:
        self.root, self.executor, self.hub = root, executor, hub

    async def boot(self) -> tuple[KeyService, ModuleIdentities]:
        registry = BackendRegistry("file", {"file": lambda: FileBackend(self.root / "keys")})
        keys = KeyService(registry, self.executor)
        await keys.start()
        store = StateStore(self.root / "state")
        identities = ModuleIdentities(keys, store, self.executor.run, _typed(self.hub))
        await identities.start()
        return keys, identities


@pytest.fixture
def device(tmp_path: Path):
    executor = BoundedExecutor()
    yield Device(tmp_path, executor, FakeHub())
    executor.shutdown()


def test_an_identity_is_created_on_the_hub_then_keyed_with_the_hub_generation(device) -> None:
    async def scenario() -> None:
        keys, identities = await device.boot()
        identity = await identities.create("tempSensor")
        assert device.hub.calls == [("create", "tempSensor"), ("set_keys", "tempSensor")]
        assert identity.generation_id == device.hub.modules["tempSensor"]["generation"]
        primary, secondary = device.hub.modules["tempSensor"]["keys"]
        master = await keys.load(MASTER_KEY)
        label = f"tempSensor:{identity.generation_id}:primary".encode()
        assert primary == await keys.sign(master, SignAlgorithm.HMAC_SHA256, label)
        assert secondary != primary
        # what the module signs through the workload API verifies with the key the hub holds
        signed = await identities.sign(
            "tempSensor", identity.generation_id, ModuleKey.PRIMARY, b"sr\nse"
        )
        assert signed == hmac.digest(primary, b"sr\nse", "sha256")

    asyncio.run(scenario())


def test_a_create_killed_after_the_hub_call_leaves_no_orphan_after_recover(device) -> None:
    async def scenario() -> None:
        _, identities = await device.boot()
        device.hub.fail_on = "set_keys"
        with pytest.raises(CloudUnreachable):
            await identities.create("tempSensor")
        assert "tempSensor" in device.hub.modules  # on the hub, not recorded here
        _, again = await device.boot()  # the next start
        assert again.pending == {"tempSensor": "create"}
        device.hub.fail_on = None
        await again.recover()
        assert device.hub.modules == {}
        assert again.pending == {}
        assert again.list() == []

    asyncio.run(scenario())


def test_delete_removes_the_hub_identity_and_a_failed_delete_is_done_again(device) -> None:
    async def scenario() -> None:
        _, identities = await device.boot()
        await identities.create("a")
        device.hub.fail_on = "delete"
        with pytest.raises(CloudUnreachable):
            await identities.delete("a")
        assert identities.pending == {"a": "delete"}
        device.hub.fail_on = None
        await identities.recover()
        assert "a" not in device.hub.modules

    asyncio.run(scenario())


def test_reconcile_creates_what_the_hub_lost_and_adopts_its_generation(device) -> None:
    async def scenario() -> None:
        _, identities = await device.boot()
        first = await identities.create("a")
        await identities.create("b")
        device.hub.modules.pop("a")  # the hub lost it (a new device registration)
        device.hub.modules["b"]["generation"] = "777"
        device.hub.calls.clear()
        await identities.reconcile()
        assert identities.get("a").generation_id != first.generation_id
        assert identities.get("b").generation_id == "777"
        assert device.hub.modules["a"]["keys"] is not None
        assert ("create", "a") in device.hub.calls and ("create", "b") not in device.hub.calls

    asyncio.run(scenario())


def test_clear_forgets_every_identity(device) -> None:
    async def scenario() -> None:
        _, identities = await device.boot()
        await identities.create("a")
        await identities.clear()
        assert identities.list() == []
        _, again = await device.boot()
        assert again.list() == []

    asyncio.run(scenario())


def test_labels_are_iot_edges_for_sas_keys_and_distinct_for_encryption() -> None:
    assert derivation_label("m", "g") == b"m:g:primary"
    assert derivation_label("m", "g", ModuleKey.SECONDARY) == b"m:g:secondary"
    assert derivation_label("m", "g", ModuleKey.ENCRYPTION).startswith(b"edgekeeper module")
