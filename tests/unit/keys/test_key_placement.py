"""Keys stay where they were made: the key service resolves existing keys by the location record,
makes only new keys where config names, adopts an older install's keys, and is loud (an error, a
WARNING, a mark in `keys list`) instead of making a key somewhere else.

Two real file backends in separate directories stand for two stores ("file" and "hsm"); the
record lives in a real state store, and each "daemon start" is a new `KeyService` over them.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from firmware.keys.backend import KeyBackend, KeyKind, SignAlgorithm
from firmware.keys.errors import KeyBackendUnavailable, KeyNotFound
from firmware.keys.file import FileBackend
from firmware.keys.handles import HANDLE_VALIDATION_KEY
from firmware.keys.locations import KeyLocations
from firmware.keys.registry import BackendRegistry
from firmware.keys.service import KeyService, Placement
from firmware.store.state import StateStore

DATA = b"to sign"


class HsmFiles(FileBackend):
    """A second store, told apart by its name."""

    name = "hsm"


class Board:
    """The two stores, the state store, and whether the "hsm" can be reached."""

    def __init__(self, root: Path, executor) -> None:
        self.root = root
        self.executor = executor
        self.state = StateStore(root / "state")
        self.hsm_reachable = True

    def file(self) -> FileBackend:
        return FileBackend(self.root / "file-keys")

    def hsm(self) -> KeyBackend:
        if not self.hsm_reachable:
            raise KeyBackendUnavailable("no token in slot 0", hint="plug the token in")
        return HsmFiles(self.root / "hsm-keys")

    def registry(self, default: str, overrides: dict[str, str] | None = None) -> BackendRegistry:
        return BackendRegistry(default, {"file": self.file, "hsm": self.hsm}, overrides)

    async def start(self, default: str, overrides: dict[str, str] | None = None) -> KeyService:
        """A daemon start with this config, over the same stores and record."""
        service = KeyService(
            self.registry(default, overrides),
            self.executor,
            locations=KeyLocations(self.state),
        )
        await service.start()
        return service

    def record(self) -> KeyLocations:
        """The location record as the next start reads it."""
        locations = KeyLocations(self.state)
        locations.load()
        return locations

    def held(self, backend: str) -> set[str]:
        store = self.file() if backend == "file" else HsmFiles(self.root / "hsm-keys")
        return {info.key_id for info in store.list_keys()}


@pytest.fixture
def board(tmp_path, executor):
    return Board(tmp_path, executor)


async def test_a_key_stays_where_it_was_made_when_the_default_changes(board, caplog):
    first = await board.start("file")
    handle = await first.create_key("device-identity", KeyKind.HMAC_SHA256)
    tag = await first.sign(handle, SignAlgorithm.HMAC_SHA256, DATA)
    await first.close()

    caplog.set_level(logging.WARNING, logger="firmware.keys.service")
    second = await board.start("hsm")
    again = await second.create_key("device-identity", KeyKind.HMAC_SHA256)
    assert await second.sign(again, SignAlgorithm.HMAC_SHA256, DATA) == tag
    assert await second.sign(handle, SignAlgorithm.HMAC_SHA256, DATA) == tag  # old handle works
    fresh = await second.create_key("new-key", KeyKind.AES_256)
    assert (await second.info(fresh)).backend == "hsm"
    assert board.held("hsm") == {"new-key"}
    assert board.held("file") == {"device-identity", HANDLE_VALIDATION_KEY}

    moved = [r.getMessage() for r in caplog.records if "keys migrate" in r.getMessage()]
    assert sorted(moved) == [
        "key device-identity lives in backend file; [keys] now names hsm for new keys; use "
        "`edgekeeper keys migrate device-identity --to hsm` to move it",
        f"key {HANDLE_VALIDATION_KEY} lives in backend file; [keys] now names hsm for new keys; "
        f"use `edgekeeper keys migrate {HANDLE_VALIDATION_KEY} --to hsm` to move it",
    ]
    assert {m.key_id for m in second.moved_keys()} == {"device-identity", HANDLE_VALIDATION_KEY}

    listing = await second.list()
    notes = {(k.key_id, k.backend): (k.placement, k.note) for k in listing.keys}
    assert notes[("device-identity", "file")] == (
        Placement.RECORDED,
        "recorded here; config names hsm for new keys",
    )
    assert notes[("new-key", "hsm")] == (Placement.RECORDED, "recorded here")


async def test_an_override_moved_to_another_backend_keeps_the_key(board):
    first = await board.start("file", {"edge-ca": "file"})
    pair = await first.create_key_pair("edge-ca", KeyKind.EC_P256)
    public = await first.public_key(pair)
    second = await board.start("file", {"edge-ca": "hsm"})
    again = await second.create_key_pair("edge-ca", KeyKind.EC_P256)
    assert await second.public_key(again) == public
    assert "edge-ca" not in board.held("hsm")


async def test_first_start_adopts_the_keys_of_an_older_install(board, caplog):
    file, hsm = board.file(), board.hsm()
    file.create(HANDLE_VALIDATION_KEY, KeyKind.HMAC_SHA256)
    file.create("device-identity", KeyKind.HMAC_SHA256)
    file.create("local", KeyKind.AES_256)
    hsm.create("device-identity", KeyKind.HMAC_SHA256)  # a copy the old bug left behind
    hsm.create("edge-ca", KeyKind.EC_P256)
    file_tag = file.sign("device-identity", SignAlgorithm.HMAC_SHA256, DATA)
    hsm_tag = hsm.sign("device-identity", SignAlgorithm.HMAC_SHA256, DATA)

    caplog.set_level(logging.WARNING, logger="firmware.keys.service")
    service = await board.start("hsm")

    assert board.state.get("key-locations") == {
        "keys": {
            HANDLE_VALIDATION_KEY: "file",
            "device-identity": "hsm",  # the copy the current config names
            "edge-ca": "hsm",
            "local": "file",
        }
    }
    handle = await service.load("device-identity")
    assert await service.sign(handle, SignAlgorithm.HMAC_SHA256, DATA) == hsm_tag != file_tag
    assert HANDLE_VALIDATION_KEY not in board.held("hsm")
    duplicates = [r.getMessage() for r in caplog.records if "held by backends" in r.getMessage()]
    assert duplicates == [
        "key device-identity is held by backends file, hsm: using the copy in hsm; the others "
        "are not used (see `edgekeeper keys list`)"
    ]
    listing = {(k.key_id, k.backend): k.note for k in (await service.list()).keys}
    assert listing[("device-identity", "file")] == (
        "not recorded: orphan copy (the key in use is in hsm)"
    )
    assert listing[("device-identity", "hsm")] == "recorded here"


async def test_duplicates_outside_the_configured_backend_prefer_file(board):
    board.file().create("shared", KeyKind.AES_256)
    board.hsm().create("shared", KeyKind.AES_256)
    await board.start("file", {"other": "hsm"})
    assert board.record().backend_of("shared") == "file"


async def test_an_unreachable_recorded_backend_fails_loudly_and_makes_nothing_elsewhere(board):
    first = await board.start("file", {"device-identity": "hsm"})
    handle = await first.create_key("device-identity", KeyKind.HMAC_SHA256)
    tag = await first.sign(handle, SignAlgorithm.HMAC_SHA256, DATA)
    await first.close()

    board.hsm_reachable = False
    second = await board.start("file")  # config no longer even names the hsm
    for attempt in (
        second.create_key("device-identity", KeyKind.HMAC_SHA256),
        second.load("device-identity"),
        second.sign(handle, SignAlgorithm.HMAC_SHA256, DATA),
    ):
        with pytest.raises(KeyBackendUnavailable, match="no token in slot 0"):
            await attempt
    assert "device-identity" not in board.held("file")
    assert second.backends_down() == {"hsm": "no token in slot 0 (plug the token in)"}
    assert second.keys_down() == {"device-identity": "hsm"}
    listing = await second.list()
    [problem] = listing.unavailable
    assert (problem.backend, problem.keys) == ("hsm", ("device-identity",))

    board.hsm_reachable = True
    assert await second.sign(handle, SignAlgorithm.HMAC_SHA256, DATA) == tag
    assert second.backends_down() == {} and second.keys_down() == {}


async def test_a_backend_out_of_reach_at_adoption_is_searched_at_the_next_start(board):
    board.file().create(HANDLE_VALIDATION_KEY, KeyKind.HMAC_SHA256)
    board.hsm().create("device-identity", KeyKind.HMAC_SHA256)
    board.hsm_reachable = False
    await board.start("file", {"device-identity": "hsm"})
    assert board.record().unsearched() == ("hsm",)
    assert board.record().backend_of("device-identity") is None

    board.hsm_reachable = True
    await board.start("file")  # config no longer names the hsm: the record still gets it
    locations = board.record()
    assert locations.unsearched() == ()
    assert locations.backend_of("device-identity") == "hsm"


async def test_the_validation_key_is_not_made_while_its_backend_was_never_searched(board):
    board.hsm_reachable = False
    with pytest.raises(KeyBackendUnavailable, match="no token in slot 0"):
        await board.start("hsm")
    assert board.held("file") == set()
    board.hsm_reachable = True
    service = await board.start("hsm")
    assert board.held("hsm") == {HANDLE_VALIDATION_KEY}
    assert service.locations.items() == {HANDLE_VALIDATION_KEY: "hsm"}


async def test_a_handle_follows_the_record_after_relocate_and_delete_forgets_it(board):
    service = await board.start("file")
    handle = await service.create_key("device-identity", KeyKind.HMAC_SHA256)
    child = await service.derive(handle, b"module-a")
    tag = await service.sign(child, SignAlgorithm.HMAC_SHA256, DATA)
    source, target = await service.backend("file"), await service.backend("hsm")
    kind, material = source.export_key("device-identity")  # what `keys migrate` does
    target.import_key("device-identity", kind, material)
    source.delete("device-identity")

    await service.relocate("device-identity", "hsm")
    assert (await service.info(handle)).backend == "hsm"
    assert await service.sign(child, SignAlgorithm.HMAC_SHA256, DATA) == tag
    assert board.record().backend_of("device-identity") == "hsm"

    await service.delete(handle)
    assert "device-identity" not in board.held("hsm")
    assert board.record().backend_of("device-identity") is None
    with pytest.raises(KeyNotFound):
        await service.sign(handle, SignAlgorithm.HMAC_SHA256, DATA)


async def test_a_recorded_key_its_backend_lost_is_made_again_there_with_a_warning(board, caplog):
    service = await board.start("file")
    await service.create_key("device-identity", KeyKind.HMAC_SHA256)
    board.file().delete("device-identity")
    caplog.set_level(logging.WARNING, logger="firmware.keys.service")
    again = await board.start("hsm")
    await again.create_key("device-identity", KeyKind.HMAC_SHA256)
    assert "device-identity" in board.held("file")
    assert "device-identity" not in board.held("hsm")
    assert any(
        "key device-identity is recorded in backend file, which no longer held it" in r.getMessage()
        for r in caplog.records
    )


async def test_a_call_that_loses_the_race_with_a_move_runs_again_where_the_key_went(board):
    keys = await board.start("file")
    handle = await keys.create_key("mover", KeyKind.HMAC_SHA256)
    expected = await keys.sign(handle, SignAlgorithm.HMAC_SHA256, DATA)
    material = board.file().export_key("mover")
    hsm = await keys.backend("hsm")
    await board.executor.run(hsm.import_key, "mover", *material)
    source = await keys.backend("file")
    moved: list[str] = []

    def sign_after_the_move(key_id: str, algorithm: SignAlgorithm, data: bytes) -> bytes:
        # The lookup chose "file"; `keys migrate` switches the record and deletes this copy
        # before the call reaches the backend.
        keys.locations.record("mover", "hsm")
        moved.append(key_id)
        raise KeyNotFound(f"no key {key_id!r} in file")

    source.sign = sign_after_the_move  # type: ignore[method-assign]
    assert await keys.sign(handle, SignAlgorithm.HMAC_SHA256, DATA) == expected
    assert moved == ["mover"]


async def test_a_backend_searched_only_for_earlier_keys_is_not_marked_down(board, caplog):
    class UnpluggedToken(HsmFiles):
        def list_keys(self):
            raise KeyBackendUnavailable("no token in slot 0", hint="plug the token in")

    registry = BackendRegistry(
        "file",
        {"file": board.file, "hsm": lambda: UnpluggedToken(board.root / "hsm-keys")},
        may_hold_keys=lambda: ["file", "hsm"],
    )
    keys = KeyService(registry, board.executor, locations=KeyLocations(board.state))
    with caplog.at_level(logging.INFO, logger="firmware.keys.service"):
        await keys.start()
    assert keys.backends_down() == {}
    assert "key backend hsm not searched for existing keys" in caplog.text
    assert "is down" not in caplog.text
