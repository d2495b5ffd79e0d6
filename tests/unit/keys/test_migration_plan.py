"""`KeyMigration` over a real `KeyService`: the dry run, the move, refusals and leftovers.

Three file backends under different names stand in for the real ones: `file` (the source),
`spare` (a target) and `sealed`, which, like a token or a TPM, does not give its keys out.
"""

from __future__ import annotations

import asyncio

import pytest

from firmware.keys.backend import KeyKind, SignAlgorithm
from firmware.keys.errors import KeyBackendUnavailable, KeyNotFound
from firmware.keys.file import FileBackend
from firmware.keys.handles import HANDLE_VALIDATION_KEY
from firmware.keys.locations import KeyLocations
from firmware.keys.migration import (
    KeyCannotMove,
    KeyMigration,
    MoveAction,
    MoveOutcome,
)
from firmware.keys.registry import BackendRegistry
from firmware.keys.service import KeyService
from firmware.store.state import StateStore

LABEL = b"edgekeeper module identity\x00tempSensor\x00gen-1"
DATA = b"sign me"


class Spare(FileBackend):
    name = "spare"


class Sealed(FileBackend):
    name = "sealed"
    exports_keys = False


class Rig:
    """A key service over the three backends and its location record, restartable."""

    def __init__(self, tmp_path, executor) -> None:
        self.tmp_path = tmp_path
        self.executor = executor
        self.services: list[KeyService] = []

    async def service(self) -> KeyService:
        root = self.tmp_path
        registry = BackendRegistry(
            "file",
            {
                "file": lambda: FileBackend(root / "file"),
                "spare": lambda: Spare(root / "spare"),
                "sealed": lambda: Sealed(root / "sealed"),
            },
            overrides={"vault-key": "sealed"},
        )
        locations = KeyLocations(StateStore(root / "state"))
        service = KeyService(registry, self.executor, locations=locations)
        await service.start()
        self.services.append(service)
        return service

    def migration(self, service: KeyService) -> KeyMigration:
        return KeyMigration(service, self.executor)

    async def close(self) -> None:
        for service in self.services:
            await service.close()


@pytest.fixture
def rig(tmp_path, executor):
    return Rig(tmp_path, executor)


def run(coro):
    return asyncio.run(coro)


async def _module_digest(keys: KeyService, device) -> bytes:
    return await keys.sign(await keys.derive(device, LABEL), SignAlgorithm.HMAC_SHA256, DATA)


def _names(backend) -> list[str]:
    return [info.key_id for info in backend.list_keys()]


def test_the_dry_run_describes_the_move_and_changes_nothing(rig, tmp_path):
    async def scenario():
        keys = await rig.service()
        await keys.create_key("device-identity", KeyKind.HMAC_SHA256)
        plan = await rig.migration(keys).plan(["device-identity"], "spare")

        (move,) = plan.moves
        assert (move.key_id, move.source, move.target) == ("device-identity", "file", "spare")
        assert move.kind is KeyKind.HMAC_SHA256
        assert move.exportable and move.action is MoveAction.MOVE
        assert move.steps == (
            "copy the material from file into spare",
            "verify the copy in spare against file by a round trip",
            "record spare as the key's backend",
            "delete the copy in file",
        )
        assert keys.locations.backend_of("device-identity") == "file"
        assert _names(await keys.backend("spare")) == []
        await rig.close()

    run(scenario())


def test_a_moved_key_gives_the_same_digests_and_leaves_no_copy_behind(rig):
    async def scenario():
        keys = await rig.service()
        device = await keys.create_key("device-identity", KeyKind.HMAC_SHA256)
        pair = await keys.create_key_pair("edge-ca", KeyKind.EC_P256)
        public = await keys.public_key(pair)
        before = await _module_digest(keys, device)

        migration = rig.migration(keys)
        plan = await migration.plan(["device-identity", "edge-ca"], "spare")
        results = await migration.apply(plan)

        assert [(r.move.key_id, r.outcome, r.backend) for r in results] == [
            ("device-identity", MoveOutcome.MOVED, "spare"),
            ("edge-ca", MoveOutcome.MOVED, "spare"),
        ]
        assert await _module_digest(keys, device) == before  # the old handle follows the record
        assert await keys.public_key(pair) == public
        assert sorted(_names(await keys.backend("spare"))) == ["device-identity", "edge-ca"]
        assert _names(await keys.backend("file")) == [HANDLE_VALIDATION_KEY]

        again = await rig.service()  # a restart finds them where the record says
        device_again = await again.load("device-identity")
        assert await _module_digest(again, device_again) == before
        assert (await again.info(await again.load("edge-ca"))).backend == "spare"
        await rig.close()

    run(scenario())


def test_every_key_moves_with_all_the_validation_key_too_and_handles_stay_valid(rig):
    async def scenario():
        keys = await rig.service()
        device = await keys.create_key("device-identity", KeyKind.HMAC_SHA256)
        aes = await keys.create_key("sealing", KeyKind.AES_256)
        sealed = await keys.encrypt(aes, b"\x01" * 12, b"aad", DATA)
        before = await _module_digest(keys, device)

        migration = rig.migration(keys)
        plan = await migration.plan(None, "spare")
        assert [m.key_id for m in plan.moves] == [
            "device-identity",
            HANDLE_VALIDATION_KEY,
            "sealing",
        ]
        results = await migration.apply(plan)

        assert {r.outcome for r in results} == {MoveOutcome.MOVED}
        assert keys.locations.items() == dict.fromkeys(
            ["device-identity", HANDLE_VALIDATION_KEY, "sealing"], "spare"
        )
        assert _names(await keys.backend("file")) == []
        again = await rig.service()
        # Handles made before the move verify in a new service: the validation key is the same.
        assert await _module_digest(again, device) == before
        assert await again.decrypt(aes, b"\x01" * 12, b"aad", sealed) == DATA
        assert (await migration.plan(None, "spare")).moves == ()
        await rig.close()

    run(scenario())


def test_a_key_that_cannot_leave_its_backend_is_refused_with_what_to_do(rig):
    async def scenario():
        keys = await rig.service()
        await keys.create_key("vault-key", KeyKind.HMAC_SHA256)
        await keys.create_key_pair("edge-ca", KeyKind.EC_P256)
        migration = rig.migration(keys)

        with pytest.raises(KeyCannotMove) as refused:
            await migration.plan(["vault-key"], "spare")
        assert "key 'vault-key' cannot leave sealed" in refused.value.message
        assert "re-provision instead" in refused.value.render()

        plan = await migration.plan(None, "spare")
        actions = {move.key_id: move.action for move in plan.moves}
        assert actions["vault-key"] is MoveAction.REFUSE
        assert actions["edge-ca"] is MoveAction.MOVE
        results = {r.move.key_id: r for r in await migration.apply(plan)}
        assert results["vault-key"].outcome is MoveOutcome.UNCHANGED
        assert results["vault-key"].backend == "sealed"
        assert results["edge-ca"].outcome is MoveOutcome.MOVED
        assert _names(await keys.backend("sealed")) == ["vault-key"]
        await rig.close()

    run(scenario())


def test_a_matching_leftover_in_the_target_is_kept_and_a_different_one_replaced(rig):
    async def scenario():
        keys = await rig.service()
        same = await keys.create_key("same", KeyKind.HMAC_SHA256)
        other = await keys.create_key("other", KeyKind.HMAC_SHA256)
        file, spare = await keys.backend("file"), await keys.backend("spare")
        spare.import_key("same", *file.export_key("same"))  # an interrupted move's copy
        spare.create("other", KeyKind.HMAC_SHA256)  # a different key of that name
        expected = {
            n: await keys.sign(h, SignAlgorithm.HMAC_SHA256, DATA)
            for n, h in (("same", same), ("other", other))
        }

        migration = rig.migration(keys)
        plan = await migration.plan(["same", "other"], "spare")
        assert all(move.leftovers == ("spare",) for move in plan.moves)
        assert plan.moves[0].steps[0].startswith("keep the copy already in spare")
        await migration.apply(plan)

        for name, handle in (("same", same), ("other", other)):
            assert await keys.sign(handle, SignAlgorithm.HMAC_SHA256, DATA) == expected[name]
        assert sorted(_names(spare)) == ["other", "same"]
        await rig.close()

    run(scenario())


def test_a_source_copy_left_after_the_switch_is_removed_by_the_next_migration(rig):
    async def scenario():
        keys = await rig.service()
        await keys.create_key("device-identity", KeyKind.HMAC_SHA256)
        await keys.create_key("stranger", KeyKind.HMAC_SHA256)
        file, spare = await keys.backend("file"), await keys.backend("spare")
        for name in ("device-identity", "stranger"):  # killed right after the switch
            spare.import_key(name, *file.export_key(name))
            await keys.relocate(name, "spare")
        file.delete("stranger")
        file.create("stranger", KeyKind.HMAC_SHA256)  # not the same key any more

        migration = rig.migration(keys)
        plan = await migration.plan(None, "spare")
        assert [(m.key_id, m.action, m.leftovers) for m in plan.moves] == [
            ("device-identity", MoveAction.STAY, ("file",)),
            (HANDLE_VALIDATION_KEY, MoveAction.MOVE, ()),
            ("stranger", MoveAction.STAY, ("file",)),
        ]
        results = {r.move.key_id: r for r in await migration.apply(plan)}

        assert results["device-identity"].removed == ("file",)
        assert results["stranger"].kept == ("file",)
        assert _names(file) == ["stranger"]
        await rig.close()

    run(scenario())


def test_a_plan_made_stale_by_another_move_fails_that_key_only(rig):
    async def scenario():
        keys = await rig.service()
        await keys.create_key("a", KeyKind.HMAC_SHA256)
        await keys.create_key("b", KeyKind.HMAC_SHA256)
        migration = rig.migration(keys)
        plan = await migration.plan(["a", "b"], "spare")
        await migration.apply(await migration.plan(["a"], "spare"))

        first, second = await migration.apply(plan)
        assert first.outcome is MoveOutcome.FAILED
        assert "plan the migration again" in first.problem
        assert first.backend == "spare"
        assert second.outcome is MoveOutcome.MOVED
        await rig.close()

    run(scenario())


def test_unknown_keys_and_backends_are_named(rig):
    async def scenario():
        keys = await rig.service()
        migration = rig.migration(keys)
        with pytest.raises(KeyNotFound, match="'absent' has no recorded backend"):
            await migration.plan(["absent"], "spare")
        with pytest.raises(KeyBackendUnavailable, match="'nowhere' is not known"):
            await migration.plan(None, "nowhere")
        await rig.close()

    run(scenario())
