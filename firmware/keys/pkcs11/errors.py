"""Errors of the PKCS#11 backend: one class per CKR_ return value, generated from `RETURN_CODES`.

Each class subclasses a family that says what the key service should make of it:
`Pkcs11Unavailable` (the token, its PIN or session is not usable: a `KeyBackendUnavailable`),
`Pkcs11OperationFailed` (the request was refused: a `KeyOperationFailed`) or `Pkcs11NotSupported`
(the token lacks a mechanism or function: a `NotSupported`). Every instance carries the return value
as `code`, its name as `name`, and the PKCS#11 function that returned it. Messages are templates
filled with the token label, the module path and the function.

`SESSION_LOST` errors mean the session is gone; the session pool drops such sessions and opens
new ones.
"""

from __future__ import annotations

from typing import ClassVar

from firmware.errors import EdgekeeperError, NotSupported
from firmware.keys.errors import KeyBackendUnavailable, KeyOperationFailed

PIN_HINT = "check [keys.pkcs11] pin / pin_file"
TOKEN_HINT = "check the token's connection and [keys.pkcs11] token_label / slot"
BUG_HINT = "this is a defect in edgekeeper's PKCS#11 backend; please report it"


class Pkcs11Error(EdgekeeperError):
    """A PKCS#11 function returned something other than CKR_OK."""

    code: int = -1
    name: str = "CKR_?"
    template: ClassVar[str] = "token '{token}' failed in {function} with {name} ({code:#x})"
    hint_text: ClassVar[str | None] = None
    session_lost: ClassVar[bool] = False

    def __init__(
        self,
        *,
        function: str,
        token: str | None = None,
        module: str | None = None,
        code: int | None = None,
    ) -> None:
        if code is not None:
            self.code = code
            self.name = return_code_name(code)
        self.function = function
        self.token = token or "?"
        self.module = module or "?"
        message = self.template.format(
            token=self.token, module=self.module, function=function, name=self.name, code=self.code
        )
        super().__init__(message, hint=self.hint_text)


class Pkcs11Unavailable(Pkcs11Error, KeyBackendUnavailable):
    """The token, its PIN, its session or its device cannot be used now."""


class Pkcs11OperationFailed(Pkcs11Error, KeyOperationFailed):
    """The token refused the request (bad data, bad signature, wrong key for the mechanism)."""


class Pkcs11NotSupported(Pkcs11Error, NotSupported):
    """The token does not offer a mechanism or function edgekeeper asked for."""


_UNAVAILABLE, _FAILED, _UNSUPPORTED = Pkcs11Unavailable, Pkcs11OperationFailed, Pkcs11NotSupported

# name, value, family, message template, hint, session lost
# fmt: off
RETURN_CODES: tuple[tuple[str, int, type[Pkcs11Error], str, str | None, bool], ...] = (
    ("CKR_CANCEL", 0x1, _FAILED, "{function} on token '{token}' was cancelled", None, False),
    ("CKR_HOST_MEMORY", 0x2, _UNAVAILABLE,
     "the PKCS#11 module {module} ran out of memory in {function}",
     "free memory on the board, or lower [board] memory_budget_mb", False),
    ("CKR_SLOT_ID_INVALID", 0x3, _UNAVAILABLE,
     "the slot of token '{token}' does not exist in {module}", TOKEN_HINT, True),
    ("CKR_GENERAL_ERROR", 0x5, _UNAVAILABLE,
     "token '{token}' failed with a general error in {function}",
     "check the token and its vendor's logs; it may need a reset", False),
    ("CKR_FUNCTION_FAILED", 0x6, _FAILED,
     "token '{token}' could not perform {function}", None, False),
    ("CKR_ARGUMENTS_BAD", 0x7, _FAILED,
     "token '{token}' refused the arguments of {function}", BUG_HINT, False),
    ("CKR_CANT_LOCK", 0xA, _UNAVAILABLE,
     "the PKCS#11 module {module} cannot run in a multi-threaded process",
     "use a thread-safe build of the vendor's module", False),
    ("CKR_ATTRIBUTE_READ_ONLY", 0x10, _FAILED,
     "token '{token}' refused to set a read-only attribute in {function}", BUG_HINT, False),
    ("CKR_ATTRIBUTE_SENSITIVE", 0x11, _FAILED,
     "token '{token}' will not reveal a sensitive attribute in {function}", None, False),
    ("CKR_ATTRIBUTE_TYPE_INVALID", 0x12, _UNSUPPORTED,
     "token '{token}' does not know an attribute asked for in {function}", None, False),
    ("CKR_ATTRIBUTE_VALUE_INVALID", 0x13, _FAILED,
     "token '{token}' refused an attribute value in {function}", None, False),
    ("CKR_ACTION_PROHIBITED", 0x1B, _FAILED,
     "token '{token}' prohibits {function} on this object", None, False),
    ("CKR_DATA_INVALID", 0x20, _FAILED,
     "token '{token}' refused the data passed to {function}", None, False),
    ("CKR_DATA_LEN_RANGE", 0x21, _FAILED,
     "the data passed to {function} on token '{token}' has a length the mechanism does not take",
     None, False),
    ("CKR_DEVICE_ERROR", 0x30, _UNAVAILABLE,
     "token '{token}' reported a device error in {function}",
     "check the token's connection and its vendor's logs", False),
    ("CKR_DEVICE_MEMORY", 0x31, _UNAVAILABLE,
     "token '{token}' is out of memory in {function}",
     "delete keys the token no longer needs", False),
    ("CKR_DEVICE_REMOVED", 0x32, _UNAVAILABLE,
     "token '{token}' was removed during {function}", "reinsert or reconnect the token", True),
    ("CKR_ENCRYPTED_DATA_INVALID", 0x40, _FAILED,
     "token '{token}' refused the ciphertext in {function}: it is corrupt or its tag does not "
     "verify", "the ciphertext, IV or AAD was altered, or another key encrypted it", False),
    ("CKR_ENCRYPTED_DATA_LEN_RANGE", 0x41, _FAILED,
     "the ciphertext passed to {function} on token '{token}' has a length the mechanism does not "
     "take", None, False),
    ("CKR_FUNCTION_CANCELED", 0x50, _FAILED,
     "{function} on token '{token}' was cancelled", None, False),
    ("CKR_FUNCTION_NOT_SUPPORTED", 0x54, _UNSUPPORTED,
     "the PKCS#11 module {module} does not implement {function}",
     "choose another backend for this key in [keys.backends]", False),
    ("CKR_KEY_HANDLE_INVALID", 0x60, _FAILED,
     "the key object used in {function} no longer exists on token '{token}'", None, False),
    ("CKR_KEY_SIZE_RANGE", 0x62, _UNSUPPORTED,
     "token '{token}' does not support the key size asked for in {function}", None, False),
    ("CKR_KEY_TYPE_INCONSISTENT", 0x63, _FAILED,
     "the key does not fit the mechanism in {function} on token '{token}'", None, False),
    ("CKR_KEY_FUNCTION_NOT_PERMITTED", 0x68, _FAILED,
     "the key's attributes forbid {function} on token '{token}'",
     "the key was created for another use; create a new key for this one", False),
    ("CKR_KEY_UNEXTRACTABLE", 0x6A, _FAILED,
     "the key on token '{token}' cannot be extracted ({function})", None, False),
    ("CKR_MECHANISM_INVALID", 0x70, _UNSUPPORTED,
     "token '{token}' does not support the mechanism asked for in {function}",
     "choose another backend for this key in [keys.backends]", False),
    ("CKR_MECHANISM_PARAM_INVALID", 0x71, _UNSUPPORTED,
     "token '{token}' does not accept the mechanism parameters of {function}",
     "choose another backend for this key in [keys.backends]", False),
    ("CKR_OBJECT_HANDLE_INVALID", 0x82, _FAILED,
     "the object used in {function} no longer exists on token '{token}'", None, False),
    ("CKR_OPERATION_ACTIVE", 0x90, _FAILED,
     "another operation is still active in the session of {function} on token '{token}'",
     BUG_HINT, True),
    ("CKR_OPERATION_NOT_INITIALIZED", 0x91, _FAILED,
     "{function} on token '{token}' ran without its operation being started", BUG_HINT, False),
    ("CKR_PIN_INCORRECT", 0xA0, _UNAVAILABLE,
     "the PIN for token '{token}' was refused", PIN_HINT, False),
    ("CKR_PIN_INVALID", 0xA1, _UNAVAILABLE,
     "the PIN for token '{token}' holds characters the token does not accept", PIN_HINT, False),
    ("CKR_PIN_LEN_RANGE", 0xA2, _UNAVAILABLE,
     "the PIN for token '{token}' is too long or too short", PIN_HINT, False),
    ("CKR_PIN_EXPIRED", 0xA3, _UNAVAILABLE,
     "the PIN for token '{token}' has expired",
     "set a new user PIN with the vendor's tool, then update [keys.pkcs11]", False),
    ("CKR_PIN_LOCKED", 0xA4, _UNAVAILABLE,
     "the user PIN of token '{token}' is locked",
     "unlock it with the security officer PIN (e.g. pkcs11-tool --init-pin) or the vendor's "
     "tool; edgekeeper does not retry a locked PIN", False),
    ("CKR_SESSION_CLOSED", 0xB0, _UNAVAILABLE,
     "the session with token '{token}' was closed during {function}", TOKEN_HINT, True),
    ("CKR_SESSION_COUNT", 0xB1, _UNAVAILABLE,
     "token '{token}' has no free sessions left", "close other applications using the token",
     False),
    ("CKR_SESSION_HANDLE_INVALID", 0xB3, _UNAVAILABLE,
     "the session with token '{token}' is no longer valid ({function})", TOKEN_HINT, True),
    ("CKR_SESSION_READ_ONLY", 0xB5, _FAILED,
     "the session with token '{token}' is read-only ({function})", BUG_HINT, False),
    ("CKR_SIGNATURE_INVALID", 0xC0, _FAILED,
     "the signature does not verify with the key on token '{token}'", None, False),
    ("CKR_SIGNATURE_LEN_RANGE", 0xC1, _FAILED,
     "the signature has the wrong length for the key on token '{token}'", None, False),
    ("CKR_TEMPLATE_INCOMPLETE", 0xD0, _FAILED,
     "token '{token}' needs more attributes for {function}", BUG_HINT, False),
    ("CKR_TEMPLATE_INCONSISTENT", 0xD1, _FAILED,
     "token '{token}' refused the attributes given to {function}", None, False),
    ("CKR_TOKEN_NOT_PRESENT", 0xE0, _UNAVAILABLE,
     "token '{token}' is not present in {module}", "insert or reconnect the token", True),
    ("CKR_TOKEN_NOT_RECOGNIZED", 0xE1, _UNAVAILABLE,
     "the PKCS#11 module {module} does not recognise token '{token}'", TOKEN_HINT, False),
    ("CKR_TOKEN_WRITE_PROTECTED", 0xE2, _FAILED,
     "token '{token}' is write-protected and cannot {function}",
     "remove the write protection, or keep new keys in another backend", False),
    ("CKR_USER_ALREADY_LOGGED_IN", 0x100, _FAILED,
     "the user is already logged in to token '{token}'", None, False),
    ("CKR_USER_NOT_LOGGED_IN", 0x101, _UNAVAILABLE,
     "token '{token}' needs a login for {function}", PIN_HINT, True),
    ("CKR_USER_PIN_NOT_INITIALIZED", 0x102, _UNAVAILABLE,
     "token '{token}' has no user PIN yet",
     "initialise it (softhsm2-util --init-token, or the vendor's tool)", False),
    ("CKR_USER_TYPE_INVALID", 0x103, _FAILED,
     "token '{token}' does not know the user type used in {function}", BUG_HINT, False),
    ("CKR_USER_ANOTHER_ALREADY_LOGGED_IN", 0x104, _UNAVAILABLE,
     "another user (the security officer?) is logged in to token '{token}'",
     "log the other user out of the token", False),
    ("CKR_USER_TOO_MANY_TYPES", 0x105, _UNAVAILABLE,
     "token '{token}' cannot log in another user type", None, False),
    ("CKR_DOMAIN_PARAMS_INVALID", 0x130, _UNSUPPORTED,
     "token '{token}' does not support the key parameters in {function}", None, False),
    ("CKR_CURVE_NOT_SUPPORTED", 0x140, _UNSUPPORTED,
     "token '{token}' does not support the curve asked for in {function}",
     "choose another backend for this key in [keys.backends]", False),
    ("CKR_BUFFER_TOO_SMALL", 0x150, _FAILED,
     "the output buffer of {function} was too small", BUG_HINT, False),
    ("CKR_CRYPTOKI_NOT_INITIALIZED", 0x190, _UNAVAILABLE,
     "the PKCS#11 module {module} is not initialised ({function})", BUG_HINT, True),
    ("CKR_CRYPTOKI_ALREADY_INITIALIZED", 0x191, _UNAVAILABLE,
     "the PKCS#11 module {module} is already initialised", BUG_HINT, False),
    ("CKR_LIBRARY_LOAD_FAILED", 0x1C2, _UNAVAILABLE,
     "the PKCS#11 module {module} could not load a library it needs",
     "install the vendor's complete runtime", False),
    ("CKR_PIN_TOO_WEAK", 0x1C3, _UNAVAILABLE,
     "token '{token}' refuses the PIN as too weak", PIN_HINT, False),
    ("CKR_PUBLIC_KEY_INVALID", 0x1C4, _FAILED,
     "token '{token}' refused the public key in {function}", None, False),
    ("CKR_FUNCTION_REJECTED", 0x200, _FAILED,
     "token '{token}' rejected {function}", None, False),
)
# fmt: on

CKR_VENDOR_DEFINED = 0x80000000


def _class_name(ckr_name: str) -> str:
    return "".join(word.capitalize() for word in ckr_name.removeprefix("CKR_").split("_"))


def _generate() -> dict[int, type[Pkcs11Error]]:
    by_code: dict[int, type[Pkcs11Error]] = {}
    for name, code, family, template, hint, session_lost in RETURN_CODES:
        cls = type(
            _class_name(name),
            (family,),
            {
                "__doc__": f"{name} ({code:#x}).",
                "__module__": __name__,
                "code": code,
                "name": name,
                "template": template,
                "hint_text": hint,
                "session_lost": session_lost,
            },
        )
        globals()[cls.__name__] = cls
        by_code[code] = cls
    return by_code


ERROR_BY_CODE: dict[int, type[Pkcs11Error]] = _generate()


def return_code_name(code: int) -> str:
    """`CKR_PIN_INCORRECT` for 0xA0; vendor-defined and unknown values in hex."""
    cls = ERROR_BY_CODE.get(code)
    if cls is not None:
        return cls.name
    if code >= CKR_VENDOR_DEFINED:
        return f"CKR_VENDOR_DEFINED+{code - CKR_VENDOR_DEFINED:#x}"
    return f"CKR_{code:#x}"


def error_for(
    code: int, function: str, *, token: str | None = None, module: str | None = None
) -> Pkcs11Error:
    """The exception for return value `code` of `function`, its message naming token and module."""
    cls = ERROR_BY_CODE.get(code)
    if cls is None:
        return Pkcs11Unavailable(function=function, token=token, module=module, code=code)
    return cls(function=function, token=token, module=module)


class ModuleLoadFailed(KeyBackendUnavailable):
    """The PKCS#11 module file is missing, not a shared library, or not a PKCS#11 module."""


class TokenNotFound(KeyBackendUnavailable):
    """No initialised token with the configured label or slot."""


class PinFileRefused(KeyBackendUnavailable):
    """A PIN file that is missing, unreadable, or readable by others."""


class PinRequired(KeyBackendUnavailable):
    """The token needs a login and no PIN is configured."""
