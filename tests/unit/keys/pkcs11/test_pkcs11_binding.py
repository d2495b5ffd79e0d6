"""The compiled binding: its version check, its constants and structures, loading modules."""

from __future__ import annotations

import importlib
import sys

import pytest

pytestmark = pytest.mark.usefixtures("pkcs11_binding")


def _build_script():
    from tests.unit.keys.pkcs11.conftest import BUILD_SCRIPT

    sys.path.insert(0, str(BUILD_SCRIPT.parent))
    try:
        return importlib.import_module("pkcs11_build")
    finally:
        sys.path.remove(str(BUILD_SCRIPT.parent))


def test_extension_carries_the_source_tree_version() -> None:
    import firmware._ffi as package

    ffi, lib = package.load_pkcs11()
    assert lib.EK_PKCS11_BINDING_VERSION == package.PKCS11_BINDING_VERSION
    assert ffi.sizeof("CK_ULONG") == ffi.sizeof("unsigned long")


def test_mismatched_extension_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    import firmware._ffi as package

    monkeypatch.setattr(package, "PKCS11_BINDING_VERSION", package.PKCS11_BINDING_VERSION + 1)
    with pytest.raises(package.BindingMismatch, match="rebuild it with"):
        package.load_pkcs11()


def test_compiled_constants_are_the_build_tables() -> None:
    from firmware._ffi import load_pkcs11

    script = _build_script()
    _, lib = load_pkcs11()
    for name, value in script.CONSTANTS.items():
        assert getattr(lib, name) == value, name


def test_error_table_agrees_with_compiled_return_values() -> None:
    from firmware._ffi import load_pkcs11
    from firmware.keys.pkcs11.errors import ERROR_BY_CODE

    _, lib = load_pkcs11()
    for name in dir(lib):
        if name.startswith("CKR_") and name != "CKR_OK":
            assert ERROR_BY_CODE[getattr(lib, name)].name == name


def test_function_list_is_the_specified_table() -> None:
    from firmware._ffi import load_pkcs11

    script = _build_script()
    ffi, _ = load_pkcs11()
    names = [name for name, _ in script.FUNCTION_LIST]
    assert len(names) == 68
    assert names[0] == "C_Initialize" and names[-1] == "C_WaitForSlotEvent"
    pointer = ffi.sizeof("void *")
    offsets = [ffi.offsetof("CK_FUNCTION_LIST", name) for name in names]
    assert offsets == [offsets[0] + index * pointer for index in range(len(names))]
    assert ffi.sizeof("CK_FUNCTION_LIST") == offsets[-1] + pointer


def test_structure_layouts_follow_the_unix_abi() -> None:
    from firmware._ffi import load_pkcs11

    ffi, _ = load_pkcs11()
    word = ffi.sizeof("CK_ULONG")
    assert ffi.sizeof("CK_ATTRIBUTE") == 3 * word
    assert ffi.sizeof("CK_MECHANISM") == 3 * word
    assert ffi.sizeof("CK_GCM_PARAMS") == 6 * word
    assert ffi.sizeof("CK_RSA_PKCS_PSS_PARAMS") == 3 * word
    assert ffi.offsetof("CK_TOKEN_INFO", "flags") == 96


def test_loading_a_missing_module_reports_dlerror() -> None:
    from firmware.keys.errors import KeyBackendUnavailable
    from firmware.keys.pkcs11.binding import Pkcs11Module
    from firmware.keys.pkcs11.errors import ModuleLoadFailed

    with pytest.raises(ModuleLoadFailed) as caught:
        Pkcs11Module.open("/nonexistent/libvendor-pkcs11.so")
    assert isinstance(caught.value, KeyBackendUnavailable)
    assert caught.value.message.startswith(
        "PKCS#11 module /nonexistent/libvendor-pkcs11.so cannot be loaded: "
    )
    assert "No such file" in caught.value.message
    assert "[keys.pkcs11] module" in (caught.value.hint or "")


def test_loading_a_library_that_is_not_a_module() -> None:
    import ctypes.util

    from firmware.keys.pkcs11.binding import Pkcs11Module
    from firmware.keys.pkcs11.errors import ModuleLoadFailed

    libm = ctypes.util.find_library("m")
    assert libm, "libm not found"
    with pytest.raises(ModuleLoadFailed, match="is not a PKCS#11 module"):
        Pkcs11Module.open(libm)


def test_offered_kinds_follow_the_mechanism_list() -> None:
    from firmware.keys.backend import KeyKind
    from firmware.keys.pkcs11 import mechanisms
    from firmware.keys.pkcs11.binding import lib

    everything = frozenset(
        mechanism for pair in mechanisms.KIND_MECHANISMS.values() for mechanism in pair
    )
    assert mechanisms.offered_kinds(everything) == frozenset(KeyKind)
    without_gcm = everything - {lib.CKM_AES_GCM}
    assert KeyKind.AES_256 not in mechanisms.offered_kinds(without_gcm)
    assert mechanisms.missing_for_kind(KeyKind.AES_256, without_gcm) == ["CKM_AES_GCM"]


def test_templates_keep_private_keys_sensitive_and_unextractable() -> None:
    from firmware.keys.backend import KeyKind
    from firmware.keys.pkcs11 import templates
    from firmware.keys.pkcs11.binding import lib

    for kind in KeyKind:
        new = templates.generation("device-key", kind)
        assert new.private[lib.CKA_SENSITIVE] is True
        assert new.private[lib.CKA_EXTRACTABLE] is False
        assert new.private[lib.CKA_PRIVATE] is True
        assert new.private[lib.CKA_LABEL] == "device-key"
        assert (new.public is not None) == kind.asymmetric
    aes = templates.generation("k", KeyKind.AES_256).private
    assert aes[lib.CKA_ENCRYPT] and aes[lib.CKA_DECRYPT] and not aes[lib.CKA_SIGN]
    hmac = templates.generation("k", KeyKind.HMAC_SHA256).private
    assert hmac[lib.CKA_SIGN] and hmac[lib.CKA_VERIFY] and not hmac[lib.CKA_ENCRYPT]
