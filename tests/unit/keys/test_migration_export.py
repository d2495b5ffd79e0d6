"""Export from the file backend: the material `import_key` takes, so a key can move elsewhere."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization

from firmware.errors import NotSupported
from firmware.keys.backend import KeyBackend, KeyKind, SignAlgorithm
from firmware.keys.errors import KeyNotFound
from firmware.keys.file import FileBackend

DATA = b"moved keys sign the same"


@pytest.mark.parametrize("kind", list(KeyKind))
def test_exported_material_imports_as_the_same_key(tmp_path, kind):
    source = FileBackend(tmp_path / "a")
    target = FileBackend(tmp_path / "b")
    source.create("k", kind)

    exported_kind, material = source.export_key("k")
    target.import_key("k", exported_kind, material)

    assert exported_kind is kind
    if kind is KeyKind.HMAC_SHA256:
        algorithm = SignAlgorithm.HMAC_SHA256
        assert target.sign("k", algorithm, DATA) == source.sign("k", algorithm, DATA)
    elif kind is KeyKind.AES_256:
        sealed = target.encrypt("k", b"\x00" * 12, b"aad", DATA)
        assert source.decrypt("k", b"\x00" * 12, b"aad", sealed) == DATA
    else:
        assert target.public_key("k") == source.public_key("k")
        serialization.load_der_private_key(material, password=None)


def test_file_backend_says_it_exports_and_the_interface_does_not(tmp_path):
    assert FileBackend(tmp_path / "keys").exports_keys
    assert not KeyBackend.exports_keys
    with pytest.raises(NotSupported, match="exporting keys"):
        KeyBackend().export_key("k")


def test_export_of_a_missing_key_is_key_not_found(tmp_path):
    with pytest.raises(KeyNotFound):
        FileBackend(tmp_path / "keys").export_key("absent")
