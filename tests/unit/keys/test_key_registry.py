"""The backend registry: names checked up front, backends opened once on first use, a backend that
fails to open is reported with the fix and tried again next time."""

from __future__ import annotations

import pytest

from firmware.config import load_config
from firmware.keys.errors import InvalidKeyName, KeyBackendUnavailable
from firmware.keys.file import FileBackend
from firmware.keys.registry import BackendRegistry, registry_from_config


def test_unknown_default_or_override_is_refused(tmp_path):
    factories = {"file": lambda: FileBackend(tmp_path)}
    with pytest.raises(KeyBackendUnavailable, match="default_backend names key backend 'hsm'"):
        BackendRegistry("hsm", factories)
    with pytest.raises(KeyBackendUnavailable, match=r"\[keys.backends\] k names key backend"):
        BackendRegistry("file", factories, {"k": "tpm"})
    with pytest.raises(InvalidKeyName):
        BackendRegistry("file", factories, {"../k": "file"})


def test_backend_for_uses_overrides_then_default(tmp_path):
    factories = {"file": lambda: FileBackend(tmp_path), "tpm": lambda: FileBackend(tmp_path)}
    registry = BackendRegistry("file", factories, {"device-identity": "tpm"})
    assert registry.backend_for("device-identity") == "tpm"
    assert registry.backend_for("other") == "file"
    assert registry.configured() == ["file", "tpm"]


def test_backends_open_once_and_lazily(tmp_path):
    opened = []

    def factory():
        opened.append(1)
        return FileBackend(tmp_path)

    registry = BackendRegistry("file", {"file": factory})
    assert opened == []
    assert registry.opened("file") is None
    first = registry.open("file")
    assert registry.open("file") is first
    assert registry.opened("file") is first
    assert opened == [1]
    registry.close()
    assert registry.opened("file") is None


def test_failing_backend_is_retried_and_import_errors_are_explained(tmp_path):
    attempts = []

    def flaky():
        attempts.append(1)
        if len(attempts) == 1:
            raise ImportError("libtss2-esys.so.0: cannot open shared object file")
        return FileBackend(tmp_path)

    registry = BackendRegistry("tpm", {"tpm": flaky})
    with pytest.raises(KeyBackendUnavailable) as caught:
        registry.open("tpm")
    assert "libtss2-esys.so.0" in caught.value.message
    assert caught.value.hint
    assert isinstance(registry.open("tpm"), FileBackend)
    assert len(attempts) == 2


def test_unknown_backend_in_a_handle_is_unavailable(tmp_path):
    registry = BackendRegistry("file", {"file": lambda: FileBackend(tmp_path)})
    with pytest.raises(KeyBackendUnavailable, match="'gone' is not known"):
        registry.open("gone")


def test_backends_that_may_hold_keys_from_config(tmp_path):
    config_file = tmp_path / "config.toml"
    config_file.write_text(
        f'[paths]\ndata_dir = "{tmp_path}/data"\nrun_dir = "{tmp_path}/run"\n'
        '[tpm]\ntcti = "device:/nonexistent/tpmrm0"\n'
    )
    config_file.chmod(0o600)
    registry = registry_from_config(load_config(config_file))
    assert registry.may_hold_keys() == ["file"]  # a TPM never used for keys is left alone
    (tmp_path / "data" / "tpm-keys").mkdir(parents=True)
    assert registry.may_hold_keys() == ["file"]
    (tmp_path / "data" / "tpm-keys" / "device-identity.tpmkey").write_bytes(b"blob")
    assert registry.may_hold_keys() == ["file", "tpm"]
    assert registry.known() == ["file", "pkcs11", "tpm"]
