"""TPM key files: format round trip, 0600 files in a 0700 directory, corrupt files named."""

from __future__ import annotations

import stat

import pytest

from firmware.keys.backend import KeyKind
from firmware.keys.errors import KeyNotFound
from firmware.keys.tpm.blobs import KeyBlob, KeyBlobStore
from firmware.store.errors import CorruptState

BLOB = KeyBlob(
    kind=KeyKind.EC_P256,
    public=b"\x00\x58public",
    private=b"\x00\x7eprivate",
    parent=bytes.fromhex("000b" + "11" * 32),
    origin="tpm",
)


def test_round_trip(tmp_path):
    assert KeyBlob.decode(BLOB.encode(), tmp_path / "k.tpmkey") == BLOB


def test_store_modes_listing_and_delete(tmp_path):
    store = KeyBlobStore(tmp_path / "tpm-keys")
    store.ensure()
    store.write("b-key", BLOB)
    store.write("a-key", BLOB)
    (store.path / ".a-key.tpmkey.123.0.tmp").write_bytes(b"left by a power cut")
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o700
    assert stat.S_IMODE(store.file_for("a-key").stat().st_mode) == 0o600
    assert store.key_ids() == ["a-key", "b-key"]
    assert store.read("a-key") == BLOB
    store.delete("a-key")
    assert store.key_ids() == ["b-key"]
    with pytest.raises(KeyNotFound):
        store.read("a-key")
    with pytest.raises(KeyNotFound):
        store.delete("a-key")


def test_existing_directory_is_tightened(tmp_path):
    path = tmp_path / "tpm-keys"
    path.mkdir(mode=0o755)
    KeyBlobStore(path).ensure()
    assert stat.S_IMODE(path.stat().st_mode) == 0o700


@pytest.mark.parametrize(
    "content",
    [
        b"not json",
        b'{"format": "other/9"}',
        BLOB.encode().replace(b'"ec-p256"', b'"ec-p999"'),
        BLOB.encode().replace(b'"public": "', b'"public": "!'),
    ],
)
def test_corrupt_file_is_named(tmp_path, content):
    store = KeyBlobStore(tmp_path)
    store.file_for("k").write_bytes(content)
    with pytest.raises(CorruptState) as caught:
        store.read("k")
    assert str(store.file_for("k")) in caught.value.message
    assert "delete it" in caught.value.hint
