"""Thin Pythonic wrapper over the cffi PKCS#11 binding: modules, tokens, sessions and objects.

`Pkcs11Module.open(path)` loads a vendor module (dlopen + C_GetFunctionList) and initialises it
for multi-threaded use; modules are shared per path in the process and finalised when their last
user releases them. A `Session` offers the object and crypto calls edgekeeper needs, in Python
types: templates are `{CKA_*: bool | int | bytes | str}` and results are bytes. Every return value
other than CKR_OK raises the matching class from `errors`. All calls block on the token; cffi
releases the GIL while the module runs, so several threads can use several sessions at once.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from firmware._ffi import load_pkcs11
from firmware.keys.pkcs11.errors import ModuleLoadFailed, error_for

if TYPE_CHECKING:
    from firmware._ffi._pkcs11 import CData

ffi, lib = load_pkcs11()

AttributeValue = bool | int | bytes | str
Template = Mapping[int, AttributeValue]

_ULONG_SIZE = ffi.sizeof("CK_ULONG")
_SIGNATURE_GUESS = 512
_CIPHER_SLACK = 64
_FIND_BATCH = 32
_LOAD_ERROR_LENGTH = 512
_USER_STATES = (lib.CKS_RO_USER_FUNCTIONS, lib.CKS_RW_USER_FUNCTIONS)


def _text(field: CData) -> str:
    """A blank-padded fixed-width PKCS#11 string field as text."""
    return bytes(ffi.buffer(field)).decode("utf-8", errors="replace").rstrip(" \0")


def ulong(raw: bytes) -> int:
    """A CK_ULONG attribute value (native byte order) as an int."""
    if len(raw) != _ULONG_SIZE:
        raise ValueError(f"CK_ULONG attribute of {len(raw)} bytes")
    return int.from_bytes(raw, sys.byteorder)


@dataclass(frozen=True)
class TokenInfo:
    """What C_GetTokenInfo says about the token in one slot."""

    slot: int
    label: str
    manufacturer: str
    model: str
    serial: str
    flags: int

    @property
    def initialized(self) -> bool:
        return bool(self.flags & lib.CKF_TOKEN_INITIALIZED)

    @property
    def pin_locked(self) -> bool:
        return bool(self.flags & lib.CKF_USER_PIN_LOCKED)

    @property
    def login_required(self) -> bool:
        return bool(self.flags & lib.CKF_LOGIN_REQUIRED)

    @property
    def protected_authentication_path(self) -> bool:
        return bool(self.flags & lib.CKF_PROTECTED_AUTHENTICATION_PATH)


class Mechanism:
    """A CK_MECHANISM with its parameter block, kept alive as long as the mechanism."""

    def __init__(
        self, mechanism_type: int, parameter: CData | None = None, *keepalive: CData | bytes
    ) -> None:
        self.type = mechanism_type
        self._struct = ffi.new("CK_MECHANISM *")
        self._struct.mechanism = mechanism_type
        if parameter is not None:
            self._struct.pParameter = parameter
            self._struct.ulParameterLen = ffi.sizeof(parameter[0])
        self._keepalive = (parameter, *keepalive)

    @property
    def cdata(self) -> CData:
        return self._struct


def aes_gcm(iv: bytes, aad: bytes, tag_bits: int = 128) -> Mechanism:
    """CKM_AES_GCM with CK_GCM_PARAMS: the caller's IV and AAD and a `tag_bits` tag."""
    iv_buffer = ffi.from_buffer("CK_BYTE[]", iv)
    aad_buffer = ffi.from_buffer("CK_BYTE[]", aad)
    params = ffi.new("CK_GCM_PARAMS *")
    params.pIv = iv_buffer
    params.ulIvLen = len(iv)
    params.ulIvBits = len(iv) * 8
    params.pAAD = aad_buffer
    params.ulAADLen = len(aad)
    params.ulTagBits = tag_bits
    return Mechanism(lib.CKM_AES_GCM, params, iv_buffer, aad_buffer, iv, aad)


def rsa_pss_sha256() -> Mechanism:
    """CKM_SHA256_RSA_PKCS_PSS with MGF1-SHA256 and a salt as long as the digest."""
    params = ffi.new("CK_RSA_PKCS_PSS_PARAMS *")
    params.hashAlg = lib.CKM_SHA256
    params.mgf = lib.CKG_MGF1_SHA256
    params.sLen = 32
    return Mechanism(lib.CKM_SHA256_RSA_PKCS_PSS, params)


class _Attributes:
    """A CK_ATTRIBUTE array for a template, owning the buffers its entries point into."""

    def __init__(self, template: Template) -> None:
        self.count = len(template)
        self.array = ffi.new("CK_ATTRIBUTE[]", max(1, self.count))
        self._buffers: list[CData | bytes] = []
        for index, (attribute_type, value) in enumerate(template.items()):
            if isinstance(value, bool):
                buffer = ffi.new("CK_BBOOL *", lib.CK_TRUE if value else lib.CK_FALSE)
                size = ffi.sizeof("CK_BBOOL")
            elif isinstance(value, int):
                buffer = ffi.new("CK_ULONG *", value)
                size = _ULONG_SIZE
            else:
                raw = value.encode("utf-8") if isinstance(value, str) else bytes(value)
                self._buffers.append(raw)
                buffer = ffi.from_buffer("CK_BYTE[]", raw)
                size = len(raw)
            self._buffers.append(buffer)
            self.array[index].type = attribute_type
            self.array[index].pValue = buffer
            self.array[index].ulValueLen = size


class Pkcs11Module:
    """One loaded PKCS#11 module; `open` shares it per path and `release` finalises it last."""

    _lock: ClassVar[threading.Lock] = threading.Lock()
    _functions: ClassVar[dict[str, CData]] = {}
    _users: ClassVar[dict[str, int]] = {}
    _owned: ClassVar[dict[str, bool]] = {}

    def __init__(self, path: str, key: str, functions: CData) -> None:
        self.path = path
        self._key = key
        self._f = functions
        self._released = False

    @classmethod
    def open(cls, path: str) -> Pkcs11Module:
        """Load and initialise the module at `path` (blocking); raises `ModuleLoadFailed`."""
        key = os.path.realpath(path) if "/" in path else path
        with cls._lock:
            functions = cls._functions.get(key)
            if functions is None:
                functions = _load(path)
                cls._functions[key] = functions
            if cls._users.get(key, 0) == 0:
                cls._owned[key] = _initialize(path, functions)
            cls._users[key] = cls._users.get(key, 0) + 1
        return cls(path, key, functions)

    def release(self) -> None:
        """Drop this user; the last one finalises the module (its library stays loaded)."""
        with self._lock:
            if self._released:
                return
            self._released = True
            self._users[self._key] -= 1
            if self._users[self._key] == 0 and self._owned.get(self._key):
                self._f.C_Finalize(ffi.NULL)

    def check(self, rv: int, function: str, token: str | None = None) -> None:
        if rv != lib.CKR_OK:
            raise error_for(rv, function, token=token, module=self.path)

    @property
    def functions(self) -> CData:
        """The module's CK_FUNCTION_LIST, for callers measuring the raw calls."""
        return self._f

    def slots(self) -> list[int]:
        """Ids of the slots that hold a token."""
        count = ffi.new("CK_ULONG *")
        self.check(self._f.C_GetSlotList(lib.CK_TRUE, ffi.NULL, count), "C_GetSlotList")
        while True:
            slots = ffi.new("CK_SLOT_ID[]", max(1, count[0]))
            rv = self._f.C_GetSlotList(lib.CK_TRUE, slots, count)
            if rv != lib.CKR_BUFFER_TOO_SMALL:
                self.check(rv, "C_GetSlotList")
                return [int(slots[index]) for index in range(count[0])]

    def token(self, slot: int) -> TokenInfo:
        info = ffi.new("CK_TOKEN_INFO *")
        self.check(self._f.C_GetTokenInfo(slot, info), "C_GetTokenInfo")
        return TokenInfo(
            slot=slot,
            label=_text(info.label),
            manufacturer=_text(info.manufacturerID),
            model=_text(info.model),
            serial=_text(info.serialNumber),
            flags=int(info.flags),
        )

    def tokens(self) -> list[TokenInfo]:
        """Every token present, initialised or not, in slot order."""
        return [self.token(slot) for slot in self.slots()]

    def mechanisms(self, slot: int) -> frozenset[int]:
        count = ffi.new("CK_ULONG *")
        self.check(self._f.C_GetMechanismList(slot, ffi.NULL, count), "C_GetMechanismList")
        while True:
            mechanisms = ffi.new("CK_MECHANISM_TYPE[]", max(1, count[0]))
            rv = self._f.C_GetMechanismList(slot, mechanisms, count)
            if rv != lib.CKR_BUFFER_TOO_SMALL:
                self.check(rv, "C_GetMechanismList")
                return frozenset(int(mechanisms[index]) for index in range(count[0]))

    def key_size_range(self, slot: int, mechanism: int) -> tuple[int, int]:
        """`(ulMinKeySize, ulMaxKeySize)` of a mechanism (bits or bytes, per mechanism)."""
        info = ffi.new("CK_MECHANISM_INFO *")
        self.check(self._f.C_GetMechanismInfo(slot, mechanism, info), "C_GetMechanismInfo")
        return int(info.ulMinKeySize), int(info.ulMaxKeySize)

    def open_session(self, token: TokenInfo) -> Session:
        """A read/write session with `token`."""
        handle = ffi.new("CK_SESSION_HANDLE *")
        flags = lib.CKF_SERIAL_SESSION | lib.CKF_RW_SESSION
        rv = self._f.C_OpenSession(token.slot, flags, ffi.NULL, ffi.NULL, handle)
        self.check(rv, "C_OpenSession", token.label)
        return Session(self, token, int(handle[0]))


def _load(path: str) -> CData:
    function_list = ffi.new("CK_FUNCTION_LIST_PTR *")
    rv = ffi.new("CK_RV *")
    error = ffi.new("char[]", _LOAD_ERROR_LENGTH)
    outcome = lib.ek_pkcs11_load(path.encode(), function_list, rv, error, _LOAD_ERROR_LENGTH)
    reason = ffi.string(error).decode("utf-8", errors="replace")
    hint = (
        "install the token's PKCS#11 library (for SoftHSM2: apt-get install softhsm2) "
        "or fix [keys.pkcs11] module"
    )
    if outcome == lib.EK_LOAD_DLOPEN_FAILED:
        raise ModuleLoadFailed(f"PKCS#11 module {path} cannot be loaded: {reason}", hint=hint)
    if outcome == lib.EK_LOAD_NO_FUNCTION_LIST:
        raise ModuleLoadFailed(
            f"{path} is not a PKCS#11 module (it has no C_GetFunctionList)", hint=hint
        )
    if outcome != lib.EK_LOAD_OK:
        raise ModuleLoadFailed(f"PKCS#11 module {path} cannot be loaded: {reason}", hint=hint)
    functions: CData = function_list[0]
    return functions


def _initialize(path: str, functions: CData) -> bool:
    """C_Initialize for OS-thread locking; False when someone else in the process owns it."""
    args = ffi.new("CK_C_INITIALIZE_ARGS *")
    args.flags = lib.CKF_OS_LOCKING_OK
    rv = functions.C_Initialize(args)
    if rv == lib.CKR_CRYPTOKI_ALREADY_INITIALIZED:
        return False
    if rv != lib.CKR_OK:
        error = error_for(rv, "C_Initialize", module=path)
        raise ModuleLoadFailed(
            f"PKCS#11 module {path} cannot be initialised: {error.message}",
            hint=error.hint or "check the module's own configuration (e.g. SOFTHSM2_CONF)",
        ) from error
    return True


class Session:
    """One session with one token. Not thread-safe: the pool gives it to one caller at a time."""

    def __init__(self, module: Pkcs11Module, token: TokenInfo, handle: int) -> None:
        self.module = module
        self.token = token
        self.handle = handle
        self._f = module.functions

    def _check(self, rv: int, function: str) -> None:
        if rv != lib.CKR_OK:
            raise error_for(rv, function, token=self.token.label, module=self.module.path)

    def close(self) -> None:
        """C_CloseSession; a session that is already gone counts as closed."""
        self._f.C_CloseSession(self.handle)

    def state(self) -> int:
        info = ffi.new("CK_SESSION_INFO *")
        self._check(self._f.C_GetSessionInfo(self.handle, info), "C_GetSessionInfo")
        return int(info.state)

    def logged_in(self) -> bool:
        return self.state() in _USER_STATES

    def login(self, pin: bytes | None) -> None:
        """Log the user in (the whole token, for every session); already logged in is fine."""
        if pin is None:
            rv = self._f.C_Login(self.handle, lib.CKU_USER, ffi.NULL, 0)
        else:
            buffer = ffi.from_buffer("CK_UTF8CHAR[]", pin)
            rv = self._f.C_Login(self.handle, lib.CKU_USER, buffer, len(pin))
        if rv != lib.CKR_USER_ALREADY_LOGGED_IN:
            self._check(rv, "C_Login")

    def find(self, template: Template) -> list[int]:
        """Handles of every object matching `template`."""
        attributes = _Attributes(template)
        self._check(
            self._f.C_FindObjectsInit(self.handle, attributes.array, attributes.count),
            "C_FindObjectsInit",
        )
        found: list[int] = []
        try:
            batch = ffi.new("CK_OBJECT_HANDLE[]", _FIND_BATCH)
            count = ffi.new("CK_ULONG *")
            while True:
                rv = self._f.C_FindObjects(self.handle, batch, _FIND_BATCH, count)
                self._check(rv, "C_FindObjects")
                found.extend(int(batch[index]) for index in range(count[0]))
                if count[0] < _FIND_BATCH:
                    break
        finally:
            final = self._f.C_FindObjectsFinal(self.handle)
        self._check(final, "C_FindObjectsFinal")
        return found

    def attributes(self, obj: int, types: Iterable[int]) -> dict[int, bytes | None]:
        """Values of `types` on `obj`; None for attributes the object lacks or keeps secret."""
        wanted = list(types)
        query = ffi.new("CK_ATTRIBUTE[]", len(wanted))
        for index, attribute_type in enumerate(wanted):
            query[index].type = attribute_type
        rv = self._f.C_GetAttributeValue(self.handle, obj, query, len(wanted))
        if rv not in (lib.CKR_OK, lib.CKR_ATTRIBUTE_SENSITIVE, lib.CKR_ATTRIBUTE_TYPE_INVALID):
            self._check(rv, "C_GetAttributeValue")
        values: dict[int, bytes | None] = dict.fromkeys(wanted)
        present = [
            index
            for index in range(len(wanted))
            if query[index].ulValueLen != lib.CK_UNAVAILABLE_INFORMATION
        ]
        if not present:
            return values
        fetch = ffi.new("CK_ATTRIBUTE[]", len(present))
        buffers = []
        for slot, index in enumerate(present):
            length = int(query[index].ulValueLen)
            buffer = ffi.new("CK_BYTE[]", max(1, length))
            buffers.append(buffer)
            fetch[slot].type = wanted[index]
            fetch[slot].pValue = buffer
            fetch[slot].ulValueLen = length
        self._check(
            self._f.C_GetAttributeValue(self.handle, obj, fetch, len(present)),
            "C_GetAttributeValue",
        )
        for slot, index in enumerate(present):
            values[wanted[index]] = bytes(ffi.buffer(buffers[slot], fetch[slot].ulValueLen))
        return values

    def generate_key(self, mechanism: Mechanism, template: Template) -> int:
        attributes = _Attributes(template)
        key = ffi.new("CK_OBJECT_HANDLE *")
        rv = self._f.C_GenerateKey(
            self.handle, mechanism.cdata, attributes.array, attributes.count, key
        )
        self._check(rv, "C_GenerateKey")
        return int(key[0])

    def generate_key_pair(
        self, mechanism: Mechanism, public: Template, private: Template
    ) -> tuple[int, int]:
        """`(public handle, private handle)` of a new key pair."""
        public_attributes = _Attributes(public)
        private_attributes = _Attributes(private)
        public_key = ffi.new("CK_OBJECT_HANDLE *")
        private_key = ffi.new("CK_OBJECT_HANDLE *")
        rv = self._f.C_GenerateKeyPair(
            self.handle,
            mechanism.cdata,
            public_attributes.array,
            public_attributes.count,
            private_attributes.array,
            private_attributes.count,
            public_key,
            private_key,
        )
        self._check(rv, "C_GenerateKeyPair")
        return int(public_key[0]), int(private_key[0])

    def create_object(self, template: Template) -> int:
        attributes = _Attributes(template)
        obj = ffi.new("CK_OBJECT_HANDLE *")
        rv = self._f.C_CreateObject(self.handle, attributes.array, attributes.count, obj)
        self._check(rv, "C_CreateObject")
        return int(obj[0])

    def destroy(self, obj: int) -> None:
        self._check(self._f.C_DestroyObject(self.handle, obj), "C_DestroyObject")

    def sign(self, key: int, mechanism: Mechanism, data: bytes) -> bytes:
        self._check(self._f.C_SignInit(self.handle, mechanism.cdata, key), "C_SignInit")
        return self._single_part(self._f.C_Sign, "C_Sign", data, _SIGNATURE_GUESS)

    def verify(self, key: int, mechanism: Mechanism, data: bytes, signature: bytes) -> bool:
        """True when `signature` verifies; False for a wrong or wrong-length signature."""
        self._check(self._f.C_VerifyInit(self.handle, mechanism.cdata, key), "C_VerifyInit")
        data_buffer = ffi.from_buffer("CK_BYTE[]", data)
        signature_buffer = ffi.from_buffer("CK_BYTE[]", signature)
        rv = self._f.C_Verify(self.handle, data_buffer, len(data), signature_buffer, len(signature))
        if rv in (lib.CKR_SIGNATURE_INVALID, lib.CKR_SIGNATURE_LEN_RANGE):
            return False
        self._check(rv, "C_Verify")
        return True

    def encrypt(self, key: int, mechanism: Mechanism, data: bytes) -> bytes:
        self._check(self._f.C_EncryptInit(self.handle, mechanism.cdata, key), "C_EncryptInit")
        return self._single_part(self._f.C_Encrypt, "C_Encrypt", data, len(data) + _CIPHER_SLACK)

    def decrypt(self, key: int, mechanism: Mechanism, data: bytes) -> bytes:
        self._check(self._f.C_DecryptInit(self.handle, mechanism.cdata, key), "C_DecryptInit")
        return self._single_part(self._f.C_Decrypt, "C_Decrypt", data, len(data) + _CIPHER_SLACK)

    def _single_part(self, call: CData, function: str, data: bytes, guess: int) -> bytes:
        """One-shot C_Sign/C_Encrypt/C_Decrypt; grows the output once if the token asks."""
        data_buffer = ffi.from_buffer("CK_BYTE[]", data)
        length = ffi.new("CK_ULONG *", guess)
        while True:
            output = ffi.new("CK_BYTE[]", max(1, length[0]))
            rv = call(self.handle, data_buffer, len(data), output, length)
            if rv != lib.CKR_BUFFER_TOO_SMALL:
                self._check(rv, function)
                return bytes(ffi.buffer(output, length[0]))
