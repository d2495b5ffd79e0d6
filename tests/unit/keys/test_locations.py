"""The key location record: written atomically, read back by a new object, corrupt ones refused."""

from __future__ import annotations

import json

import pytest

from firmware.keys.locations import KeyLocations
from firmware.store.errors import CorruptState, StateWriteError
from firmware.store.state import StateStore


@pytest.fixture
def store(tmp_path):
    return StateStore(tmp_path / "state")


def test_missing_document_is_an_empty_record(store):
    locations = KeyLocations(store)
    locations.load()
    assert locations.items() == {}
    assert locations.backend_of("device-identity") is None
    assert not locations.stored


def test_record_survives_a_new_object(store):
    locations = KeyLocations(store)
    locations.load()
    locations.record("device-identity", "file")
    locations.record("edge-ca", "pkcs11")
    locations.record("device-identity", "tpm")

    again = KeyLocations(store)
    again.load()
    assert again.items() == {"device-identity": "tpm", "edge-ca": "pkcs11"}
    assert again.stored
    doc = json.loads(store.path("key-locations").read_text())
    assert doc == {"keys": {"device-identity": "tpm", "edge-ca": "pkcs11"}}
    assert store.path("key-locations").stat().st_mode & 0o777 == 0o600


def test_forget_removes_only_that_key(store):
    locations = KeyLocations(store)
    locations.record_all({"a": "file", "b": "tpm"})
    locations.forget("a")
    locations.forget("never-recorded")
    again = KeyLocations(store)
    again.load()
    assert again.items() == {"b": "tpm"}


def test_empty_adoption_still_writes_the_document(store):
    locations = KeyLocations(store)
    locations.load()
    locations.record_all({})
    assert locations.stored
    assert store.get("key-locations") == {"keys": {}}


def test_a_failed_write_leaves_memory_as_the_disk(store, monkeypatch):
    locations = KeyLocations(store)
    locations.record("a", "file")

    def full_disk(name, doc):
        raise StateWriteError("cannot write: no space left on device")

    monkeypatch.setattr(store, "put", full_disk)
    with pytest.raises(StateWriteError):
        locations.record("b", "tpm")
    with pytest.raises(StateWriteError):
        locations.forget("a")
    assert locations.items() == {"a": "file"}


@pytest.mark.parametrize("doc", [[1], {"keys": []}, {"keys": {"a": 1}}, {}])
def test_a_corrupt_document_is_refused_and_left_in_place(store, doc):
    store.ensure()
    store.path("key-locations").write_text(json.dumps(doc))
    with pytest.raises(CorruptState):
        KeyLocations(store).load()
    assert json.loads(store.path("key-locations").read_text()) == doc


def test_unsearched_backends_are_kept_until_replaced(store):
    locations = KeyLocations(store)
    locations.record_all({"a": "file"}, unsearched=["tpm", "pkcs11", "tpm"])
    locations.record("b", "file")
    again = KeyLocations(store)
    again.load()
    assert again.unsearched() == ("pkcs11", "tpm")
    again.record_all({"c": "pkcs11"}, unsearched=["tpm"])
    again.record_all({}, unsearched=[])
    third = KeyLocations(store)
    third.load()
    assert third.unsearched() == ()
    assert third.items() == {"a": "file", "b": "file", "c": "pkcs11"}
    assert store.get("key-locations") == {"keys": third.items()}


def test_a_record_in_memory_only_has_nothing_to_adopt_and_survives_load():
    locations = KeyLocations(None)
    assert locations.stored
    locations.record("a", "file")
    locations.load()
    assert locations.items() == {"a": "file"}
