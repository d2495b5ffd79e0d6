"""The blocking steps of a key move: the round-trip check, the verified copy, leftover removal.

Two file backends under different names stand in for a source and a target; a target whose
import corrupts what it stores shows that a bad copy is never kept.
"""

from __future__ import annotations

import pytest

from firmware.keys.backend import KeyKind, SignAlgorithm
from firmware.keys.errors import KeyNotFound, KeyOperationFailed
from firmware.keys.file import FileBackend
from firmware.keys.migration import copy_verified, remove_if_same, same_key

DATA = b"the same key signs the same"


class Target(FileBackend):
    """A second file backend, named apart from the source; counts imports."""

    name = "target"
    imports = 0

    def import_key(self, key_id, kind, key_material):
        self.imports += 1
        return super().import_key(key_id, kind, key_material)


class Corrupting(Target):
    """A target that stores other material than it was given (for secrets: one bit flipped)."""

    def import_key(self, key_id, kind, key_material):
        if kind.asymmetric:
            other = FileBackend(self._files.path.parent / "other")
            other.create(key_id, kind)
            key_material = other.export_key(key_id)[1]
        else:
            key_material = bytes([key_material[0] ^ 1]) + key_material[1:]
        return super().import_key(key_id, kind, key_material)


@pytest.fixture
def source(tmp_path):
    return FileBackend(tmp_path / "source")


@pytest.fixture
def target(tmp_path):
    return Target(tmp_path / "target")


@pytest.mark.parametrize("kind", list(KeyKind))
def test_a_copy_is_the_same_key_and_another_key_of_its_kind_is_not(source, target, kind):
    source.create("k", kind)
    target.create("k", kind)
    assert not same_key(source, target, "k", kind)

    target.import_key("k", *source.export_key("k"))
    assert same_key(source, target, "k", kind)


def test_a_missing_copy_or_one_of_another_kind_is_not_the_same_key(source, target):
    source.create("k", KeyKind.HMAC_SHA256)
    assert not same_key(source, target, "k", KeyKind.HMAC_SHA256)
    target.create("k", KeyKind.AES_256)
    assert not same_key(source, target, "k", KeyKind.HMAC_SHA256)


@pytest.mark.parametrize("kind", list(KeyKind))
def test_copy_verified_puts_the_same_key_into_an_empty_target(source, target, kind):
    source.create("k", kind)
    copy_verified(source, target, "k")
    assert target.imports == 1
    assert same_key(source, target, "k", kind)
    assert source.info("k").kind is kind  # the source is untouched


def test_a_leftover_copy_that_matches_is_kept_without_importing_again(source, target):
    source.create("k", KeyKind.HMAC_SHA256)
    target.import_key("k", *source.export_key("k"))
    imports = target.imports

    copy_verified(source, target, "k")
    assert target.imports == imports


def test_a_leftover_that_differs_is_replaced(source, target):
    source.create("k", KeyKind.HMAC_SHA256)
    target.create("k", KeyKind.HMAC_SHA256)

    copy_verified(source, target, "k")
    algorithm = SignAlgorithm.HMAC_SHA256
    assert target.sign("k", algorithm, DATA) == source.sign("k", algorithm, DATA)


@pytest.mark.parametrize("kind", list(KeyKind))
def test_a_copy_that_fails_the_round_trip_is_deleted_and_refused(source, tmp_path, kind):
    source.create("k", kind)
    target = Corrupting(tmp_path / "target")

    with pytest.raises(KeyOperationFailed, match="does not match"):
        copy_verified(source, target, "k")
    with pytest.raises(KeyNotFound):
        target.info("k")
    assert source.info("k").kind is kind


def test_a_leftover_is_removed_only_when_it_is_the_same_key(source, target):
    source.create("same", KeyKind.EC_P256)
    target.import_key("same", *source.export_key("same"))
    source.create("other", KeyKind.EC_P256)
    target.create("other", KeyKind.EC_P256)

    assert remove_if_same(source, target, "same", KeyKind.EC_P256)
    assert not remove_if_same(source, target, "other", KeyKind.EC_P256)
    assert [info.key_id for info in target.list_keys()] == ["other"]
    assert [info.key_id for info in source.list_keys()] == ["other", "same"]
