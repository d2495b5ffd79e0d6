"""The file backend on a temp dir: permissions, create-if-absent, kinds, import, delete."""

from __future__ import annotations

import stat

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from firmware.keys.backend import KeyKind, SignAlgorithm
from firmware.keys.errors import KeyKindMismatch, KeyNotFound, KeyOperationFailed
from firmware.keys.file import FileBackend
from firmware.store.errors import UnsafeDirectory, UnsafeFile


def mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def test_directory_0700_and_key_files_0600(tmp_path):
    backend = FileBackend(tmp_path / "keys")
    backend.create("k", KeyKind.EC_P256)
    assert mode(tmp_path / "keys") == 0o700
    assert mode(tmp_path / "keys" / "k.key") == 0o600
    assert [p.name for p in (tmp_path / "keys").iterdir()] == ["k.key"]


def test_create_is_create_if_absent(tmp_path):
    backend = FileBackend(tmp_path)
    backend.create("k", KeyKind.EC_P256)
    first = backend.public_key("k")
    backend.create("k", KeyKind.EC_P256)
    assert FileBackend(tmp_path).public_key("k") == first


def test_create_with_another_kind_conflicts(tmp_path):
    backend = FileBackend(tmp_path)
    backend.create("k", KeyKind.HMAC_SHA256)
    with pytest.raises(KeyKindMismatch, match="hmac-sha256"):
        backend.create("k", KeyKind.AES_256)


def test_wrong_algorithm_for_kind_is_refused(tmp_path):
    backend = FileBackend(tmp_path)
    backend.create("k", KeyKind.EC_P256)
    with pytest.raises(KeyKindMismatch):
        backend.sign("k", SignAlgorithm.RSA_PSS_SHA256, b"x")
    with pytest.raises(KeyKindMismatch):
        backend.encrypt("k", b"\0" * 12, b"", b"x")


def test_import_pkcs8_pair_and_secret(tmp_path):
    from cryptography.hazmat.primitives import serialization

    private = ec.generate_private_key(ec.SECP256R1())
    der = private.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    backend = FileBackend(tmp_path)
    backend.import_key("pair", KeyKind.EC_P256, der)
    assert backend.public_key("pair") == private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    backend.import_key("mac", KeyKind.HMAC_SHA256, b"s" * 64)
    import hmac

    assert backend.sign("mac", SignAlgorithm.HMAC_SHA256, b"d") == hmac.digest(
        b"s" * 64, b"d", "sha256"
    )


def test_import_refuses_wrong_material(tmp_path):
    backend = FileBackend(tmp_path)
    with pytest.raises(KeyOperationFailed, match="32 bytes"):
        backend.import_key("aes", KeyKind.AES_256, b"short")
    with pytest.raises(KeyOperationFailed, match="PKCS#8"):
        backend.import_key("pair", KeyKind.RSA_2048, b"not der")
    assert backend.list_keys() == []


def test_delete_and_missing_key(tmp_path):
    backend = FileBackend(tmp_path)
    backend.create("k", KeyKind.AES_256)
    backend.delete("k")
    with pytest.raises(KeyNotFound, match="'k'"):
        backend.info("k")
    with pytest.raises(KeyNotFound):
        backend.delete("k")


def test_list_reports_kinds(tmp_path):
    backend = FileBackend(tmp_path)
    backend.create("b", KeyKind.AES_256)
    backend.create("a", KeyKind.HMAC_SHA256)
    assert [(i.key_id, i.kind, i.backend) for i in backend.list_keys()] == [
        ("a", KeyKind.HMAC_SHA256, "file"),
        ("b", KeyKind.AES_256, "file"),
    ]


def test_a_linked_key_file_is_refused_not_read(tmp_path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"ec-p256\nnot a key of ours")
    backend = FileBackend(tmp_path / "keys")
    (tmp_path / "keys" / "k.key").symlink_to(victim)
    with pytest.raises(UnsafeFile, match=r"k\.key is a symbolic link"):
        backend.public_key("k")
    assert victim.read_bytes() == b"ec-p256\nnot a key of ours"


def test_a_key_directory_others_can_write_is_refused(tmp_path):
    keys = tmp_path / "keys"
    keys.mkdir()
    keys.chmod(0o777)
    with pytest.raises(UnsafeDirectory) as caught:
        FileBackend(keys)
    assert caught.value.render() == (
        f"file key directory {keys} is writable by group or others (mode 0777) (chmod 700 {keys})"
    )
    assert mode(keys) == 0o777
