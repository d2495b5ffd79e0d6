"""The CKR_ error table: one class per return value, families, messages, lookup."""

from __future__ import annotations

import pytest

from firmware.errors import NotSupported
from firmware.keys.errors import KeyBackendUnavailable, KeyOperationFailed
from firmware.keys.pkcs11 import errors


def test_every_return_value_has_its_own_class_and_name() -> None:
    codes = [row[1] for row in errors.RETURN_CODES]
    names = [row[0] for row in errors.RETURN_CODES]
    assert len(set(codes)) == len(codes)
    assert len(set(names)) == len(names)
    classes = {errors.ERROR_BY_CODE[code] for code in codes}
    assert len(classes) == len(codes)
    for name, code, family, *_ in errors.RETURN_CODES:
        cls = errors.ERROR_BY_CODE[code]
        assert cls.code == code and cls.name == name
        assert issubclass(cls, family) and issubclass(cls, errors.Pkcs11Error)
        assert getattr(errors, cls.__name__) is cls


@pytest.mark.parametrize(
    ("name", "code", "family"),
    [
        ("PinIncorrect", 0xA0, KeyBackendUnavailable),
        ("PinLocked", 0xA4, KeyBackendUnavailable),
        ("TokenNotPresent", 0xE0, KeyBackendUnavailable),
        ("SessionHandleInvalid", 0xB3, KeyBackendUnavailable),
        ("DeviceError", 0x30, KeyBackendUnavailable),
        ("GeneralError", 0x5, KeyBackendUnavailable),
        ("UserNotLoggedIn", 0x101, KeyBackendUnavailable),
        ("KeyTypeInconsistent", 0x63, KeyOperationFailed),
        ("EncryptedDataInvalid", 0x40, KeyOperationFailed),
        ("DataLenRange", 0x21, KeyOperationFailed),
        ("SignatureInvalid", 0xC0, KeyOperationFailed),
        ("UserAlreadyLoggedIn", 0x100, KeyOperationFailed),
        ("ObjectHandleInvalid", 0x82, KeyOperationFailed),
        ("ArgumentsBad", 0x7, KeyOperationFailed),
        ("MechanismInvalid", 0x70, NotSupported),
        ("FunctionNotSupported", 0x54, NotSupported),
    ],
)
def test_named_classes_carry_code_and_family(name: str, code: int, family: type) -> None:
    cls = getattr(errors, name)
    error = errors.error_for(code, "C_Something", token="edge", module="/m.so")
    assert type(error) is cls
    assert isinstance(error, family)
    assert error.code == code
    assert error.function == "C_Something"


def test_wrong_pin_message_names_token_and_config_keys() -> None:
    error = errors.error_for(0xA0, "C_Login", token="edge-token", module="/m.so")
    assert isinstance(error, errors.PinIncorrect)
    assert error.render() == (
        "the PIN for token 'edge-token' was refused (check [keys.pkcs11] pin / pin_file)"
    )
    assert error.http_status == 503


def test_messages_fill_module_and_function() -> None:
    error = errors.error_for(0x54, "C_GenerateKeyPair", token="t", module="/usr/lib/x.so")
    assert error.message == "the PKCS#11 module /usr/lib/x.so does not implement C_GenerateKeyPair"
    assert error.http_status == 501
    assert errors.error_for(0xC0, "C_Verify").http_status == 400


def test_every_template_formats() -> None:
    for code in errors.ERROR_BY_CODE:
        error = errors.error_for(code, "C_Fn", token="tok", module="/mod.so")
        assert "{" not in error.message and error.message


def test_session_lost_marks_dead_sessions_only() -> None:
    lost = {cls.name for cls in errors.ERROR_BY_CODE.values() if cls.session_lost}
    assert {
        "CKR_SESSION_HANDLE_INVALID",
        "CKR_SESSION_CLOSED",
        "CKR_TOKEN_NOT_PRESENT",
        "CKR_DEVICE_REMOVED",
        "CKR_USER_NOT_LOGGED_IN",
    } <= lost
    assert "CKR_PIN_INCORRECT" not in lost
    assert "CKR_SIGNATURE_INVALID" not in lost


def test_unknown_and_vendor_codes_still_raise_with_their_value() -> None:
    unknown = errors.error_for(0x777, "C_Sign", token="t")
    assert type(unknown) is errors.Pkcs11Unavailable
    assert unknown.code == 0x777
    assert "0x777" in unknown.message
    vendor = errors.error_for(0x80000005, "C_Sign", token="t")
    assert vendor.name == "CKR_VENDOR_DEFINED+0x5"
    assert "CKR_VENDOR_DEFINED+0x5" in vendor.message
    assert errors.return_code_name(0xA4) == "CKR_PIN_LOCKED"


def test_non_ckr_errors_are_backend_unavailable() -> None:
    for cls in (
        errors.ModuleLoadFailed,
        errors.TokenNotFound,
        errors.PinFileRefused,
        errors.PinRequired,
    ):
        assert issubclass(cls, KeyBackendUnavailable)
