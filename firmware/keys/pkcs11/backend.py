"""`Pkcs11Backend`: the `KeyBackend` over one PKCS#11 token, keys found and created by label.

Opening the backend loads the module, picks the token by label or slot, and logs in once (a
session pool keeps at least one session, and with it the login, open). A PIN the token refused is
remembered for the process and never sent again, so a wrong PIN in the config cannot lock a token
through retries; a corrected PIN (config reload) is tried. Object handles are cached per key and
looked up again when the token says they are stale (the backend assumes it alone manages the
objects labelled with its key ids). Every method blocks; several executor threads
may call at once.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from firmware.errors import NotSupported
from firmware.keys import software
from firmware.keys.backend import (
    BackendInfo,
    Capability,
    KeyBackend,
    KeyInfo,
    KeyKind,
    SignAlgorithm,
)
from firmware.keys.errors import InvalidKeyName, KeyKindMismatch, KeyNotFound, KeyOperationFailed
from firmware.keys.names import validate_key_name
from firmware.keys.pkcs11 import der, mechanisms, templates
from firmware.keys.pkcs11.binding import (
    Mechanism,
    Pkcs11Module,
    Session,
    TokenInfo,
    aes_gcm,
    lib,
)
from firmware.keys.pkcs11.errors import (
    ERROR_BY_CODE,
    PinRequired,
    Pkcs11Error,
    TokenNotFound,
    error_for,
)
from firmware.keys.pkcs11.pin import resolve_pin
from firmware.keys.pkcs11.pool import SessionPool

_SIGNATURE_LENGTHS = {
    SignAlgorithm.RSA_PKCS1_SHA256: templates.RSA_BITS // 8,
    SignAlgorithm.RSA_PSS_SHA256: templates.RSA_BITS // 8,
    SignAlgorithm.HMAC_SHA256: hashlib.sha256().digest_size,
}

T = TypeVar("T")

DEFAULT_MAX_SESSIONS = 4
GCM_TAG_LENGTH = 16
GCM_IV_RANGE = (8, 128)

_PIN_REFUSALS = frozenset(
    code
    for code, cls in ERROR_BY_CODE.items()
    if cls.name
    in (
        "CKR_PIN_INCORRECT",
        "CKR_PIN_INVALID",
        "CKR_PIN_LEN_RANGE",
        "CKR_PIN_EXPIRED",
        "CKR_PIN_LOCKED",
    )
)
_STALE_HANDLE = frozenset(
    code
    for code, cls in ERROR_BY_CODE.items()
    if cls.name in ("CKR_KEY_HANDLE_INVALID", "CKR_OBJECT_HANDLE_INVALID")
)
# How SoftHSM2 and others report a GCM tag that does not verify.
_GCM_REFUSALS = frozenset(
    code
    for code, cls in ERROR_BY_CODE.items()
    if cls.name
    in (
        "CKR_ENCRYPTED_DATA_INVALID",
        "CKR_ENCRYPTED_DATA_LEN_RANGE",
        "CKR_GENERAL_ERROR",
        "CKR_FUNCTION_FAILED",
    )
)
_PIN_LOCKED = next(code for code, cls in ERROR_BY_CODE.items() if cls.name == "CKR_PIN_LOCKED")

# (module, token serial, token label, PIN digest) -> return value the token gave that PIN.
_refused_pins: dict[tuple[str, str, str, bytes], int] = {}
_refused_lock = threading.Lock()


@dataclass(frozen=True)
class _KeyObjects:
    """A key's objects on the token: its private or secret key, and a pair's public key."""

    kind: KeyKind
    key: int
    public: int | None


class Pkcs11Backend(KeyBackend):
    """Keys on one PKCS#11 token (SoftHSM2, a secure element, an HSM)."""

    name = "pkcs11"

    def __init__(
        self,
        module_path: str,
        token_label: str | None = None,
        slot: int | None = None,
        pin: str | None = None,
        pin_file: Path | None = None,
        *,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
    ) -> None:
        """Open the token (blocking) and log in once; errors name the module, token and fix.

        `token_label` and/or `slot` pick the token (neither: the only initialised one); the PIN
        comes from `pin` or a 0600 `pin_file`; at most `max_sessions` sessions are opened.
        """
        self._pin = resolve_pin(pin, pin_file)
        self._wanted = (token_label, slot)
        self._mutating = threading.Lock()
        self._objects: dict[str, _KeyObjects] = {}
        self._pool = SessionPool(self._open_session, max_sessions)
        self._module = Pkcs11Module.open(module_path)
        try:
            self._token = select_token(self._module, token_label, slot)
            self._mechanisms = self._module.mechanisms(self._token.slot)
            self._kinds = mechanisms.offered_kinds(self._mechanisms)
            self._pool.run(Session.state)
        except BaseException:
            self._pool.close()
            self._module.release()
            raise

    @property
    def token(self) -> TokenInfo:
        return self._token

    @property
    def pool(self) -> SessionPool:
        return self._pool

    def describe(self) -> BackendInfo:
        capabilities = {Capability.CREATE, Capability.IMPORT, Capability.DELETE, Capability.LIST}
        if self._kinds & {KeyKind.EC_P256, KeyKind.RSA_2048}:
            capabilities.add(Capability.PUBLIC_KEY)
        if self._kinds - {KeyKind.AES_256}:
            capabilities |= {Capability.SIGN, Capability.VERIFY}
        if KeyKind.AES_256 in self._kinds:
            capabilities.add(Capability.ENCRYPT)
        return BackendInfo(
            name=self.name,
            device=f"PKCS#11 token '{self._token.label}' (slot {self._token.slot}) "
            f"via {self._module.path}",
            kinds=self._kinds,
            capabilities=frozenset(capabilities),
        )

    def create(self, key_id: str, kind: KeyKind) -> KeyInfo:
        self._require_kind(kind)

        def create_if_absent(session: Session) -> None:
            existing = self._lookup(session, key_id)
            if existing is not None:
                _check_kind(key_id, existing.kind, kind)
                return
            self._destroy_label(session, key_id)
            templates.create(session, templates.generation(key_id, kind))

        with self._mutating:
            self._pool.run(create_if_absent)
        return KeyInfo(key_id=key_id, kind=kind, backend=self.name)

    def import_key(self, key_id: str, kind: KeyKind, material: bytes) -> KeyInfo:
        self._require_kind(kind)
        new = templates.importing(key_id, kind, material)
        if kind is KeyKind.HMAC_SHA256:
            self._check_hmac_length(len(material))

        def replace(session: Session) -> None:
            old = session.find({lib.CKA_LABEL: key_id})
            templates.create(session, new)
            for handle in old:
                session.destroy(handle)

        with self._mutating:
            try:
                self._pool.run(replace)
            finally:
                self._objects.pop(key_id, None)
        return KeyInfo(key_id=key_id, kind=kind, backend=self.name)

    def info(self, key_id: str) -> KeyInfo:
        objects = self._pool.run(lambda session: self._objects_of(session, key_id))
        return KeyInfo(key_id=key_id, kind=objects.kind, backend=self.name)

    def list_keys(self) -> list[KeyInfo]:
        return self._pool.run(self._list)

    def public_key(self, key_id: str) -> bytes:
        def read(session: Session, objects: _KeyObjects) -> bytes:
            if not objects.kind.asymmetric:
                raise KeyKindMismatch(
                    f"key {key_id!r} is a symmetric {objects.kind.value} key and has no public key"
                )
            source = objects.public if objects.public is not None else objects.key
            if objects.kind is KeyKind.EC_P256:
                values = session.attributes(source, (lib.CKA_EC_PARAMS, lib.CKA_EC_POINT))
                params, point = values[lib.CKA_EC_PARAMS], values[lib.CKA_EC_POINT]
                if params is None or point is None:
                    raise KeyOperationFailed(
                        f"token '{self._token.label}' does not reveal the public point of "
                        f"key {key_id!r}"
                    )
                return der.ec_public_der(params, point)
            values = session.attributes(source, (lib.CKA_MODULUS, lib.CKA_PUBLIC_EXPONENT))
            modulus, exponent = values[lib.CKA_MODULUS], values[lib.CKA_PUBLIC_EXPONENT]
            if modulus is None or exponent is None:
                raise KeyOperationFailed(
                    f"token '{self._token.label}' does not reveal the public key of {key_id!r}"
                )
            return der.rsa_public_der(modulus, exponent)

        return self._with_key(key_id, read)

    def sign(self, key_id: str, algorithm: SignAlgorithm, data: bytes) -> bytes:
        mechanism = self._sign_mechanism(algorithm)

        def sign(session: Session, objects: _KeyObjects) -> bytes:
            software.check_algorithm(key_id, objects.kind, algorithm)
            if mechanism.type == lib.CKM_ECDSA:
                digest = software.sha256_digest(algorithm, data)
                return der.ecdsa_raw_to_der(session.sign(objects.key, mechanism, digest))
            return session.sign(objects.key, mechanism, data)

        return self._with_key(key_id, sign)

    def verify(self, key_id: str, algorithm: SignAlgorithm, data: bytes, signature: bytes) -> bool:
        mechanism = self._sign_mechanism(algorithm)

        def verify(session: Session, objects: _KeyObjects) -> bool:
            software.check_algorithm(key_id, objects.kind, algorithm)
            # A signature of the wrong length is refused before the token sees it: whatever the
            # token's own rules, a MAC check must never accept a truncated tag.
            if len(signature) != _SIGNATURE_LENGTHS.get(algorithm, len(signature)):
                return False
            if algorithm is SignAlgorithm.HMAC_SHA256:
                return session.verify(objects.key, mechanism, data, signature)
            if objects.public is None:
                raise KeyOperationFailed(
                    f"key {key_id!r} has no public key object on token '{self._token.label}'",
                    hint="re-import the key pair so its public key is stored too",
                )
            if mechanism.type == lib.CKM_ECDSA:
                raw = der.ecdsa_der_to_raw(signature)
                if raw is None:
                    return False
                digest = software.sha256_digest(algorithm, data)
                return session.verify(objects.public, mechanism, digest, raw)
            return session.verify(objects.public, mechanism, data, signature)

        return self._with_key(key_id, verify)

    def encrypt(self, key_id: str, iv: bytes, aad: bytes, plaintext: bytes) -> bytes:
        self._require_kind(KeyKind.AES_256)
        _check_iv(key_id, iv)

        def encrypt(session: Session, objects: _KeyObjects) -> bytes:
            software.check_aes(key_id, objects.kind)
            return session.encrypt(objects.key, aes_gcm(iv, aad), plaintext)

        return self._with_key(key_id, encrypt)

    def decrypt(self, key_id: str, iv: bytes, aad: bytes, ciphertext: bytes) -> bytes:
        self._require_kind(KeyKind.AES_256)
        _check_iv(key_id, iv)
        if len(ciphertext) < GCM_TAG_LENGTH:
            raise KeyOperationFailed(
                f"ciphertext for key {key_id!r} is shorter than the {GCM_TAG_LENGTH}-byte GCM tag"
            )

        def decrypt(session: Session, objects: _KeyObjects) -> bytes:
            software.check_aes(key_id, objects.kind)
            try:
                return session.decrypt(objects.key, aes_gcm(iv, aad), ciphertext)
            except Pkcs11Error as err:
                if err.code not in _GCM_REFUSALS or err.function != "C_Decrypt":
                    raise
                raise KeyOperationFailed(
                    f"AES-256-GCM tag does not verify for key {key_id!r}",
                    hint="the ciphertext, IV or AAD was altered, or another key encrypted it",
                ) from err

        return self._with_key(key_id, decrypt)

    def delete(self, key_id: str) -> None:
        def delete(session: Session) -> None:
            if not self._destroy_label(session, key_id):
                raise self._not_found(key_id)

        with self._mutating:
            try:
                self._pool.run(delete)
            finally:
                self._objects.pop(key_id, None)

    def close(self) -> None:
        """Close the sessions and release the module (finalised when no backend uses it)."""
        self._pool.close()
        self._module.release()

    def _open_session(self) -> Session:
        """A new session, logged in (once for the whole token) when the token needs it.

        A token that left its slot (unplugged and plugged back, renumbered by the module) is
        looked up again by its label once; its old object handles are forgotten.
        """
        try:
            session = self._module.open_session(self._token)
        except Pkcs11Error as err:
            if not err.session_lost:
                raise
            self._token = select_token(self._module, *self._wanted)
            self._objects.clear()
            session = self._module.open_session(self._token)
        try:
            if not session.logged_in() and (self._pin is not None or self._token.login_required):
                self._login(session)
        except BaseException:
            session.close()
            raise
        return session

    def _login(self, session: Session) -> None:
        token = self._module.token(self._token.slot)
        refusal_key = (
            self._module.path,
            token.serial,
            token.label,
            hashlib.sha256(self._pin or b"").digest(),
        )
        with _refused_lock:
            refused = _refused_pins.get(refusal_key)
        if refused is None and token.pin_locked:
            refused = _PIN_LOCKED
        if refused is not None:
            raise error_for(refused, "C_Login", token=token.label, module=self._module.path)
        if self._pin is None and not token.protected_authentication_path:
            raise PinRequired(
                f"PKCS#11 token '{token.label}' needs a user PIN and none is configured",
                hint="set [keys.pkcs11] pin_file (a 0600 file holding the PIN) or pin",
            )
        try:
            session.login(self._pin)
        except Pkcs11Error as err:
            if err.code in _PIN_REFUSALS:
                with _refused_lock:
                    _refused_pins[refusal_key] = err.code
            raise

    def _with_key(self, key_id: str, operation: Callable[[Session, _KeyObjects], T]) -> T:
        """`operation` on the key's objects; looks them up again once if the handles went stale."""

        def run(session: Session) -> T:
            objects = self._objects_of(session, key_id)
            try:
                return operation(session, objects)
            except Pkcs11Error as err:
                if err.code not in _STALE_HANDLE:
                    raise
            self._objects.pop(key_id, None)
            return operation(session, self._objects_of(session, key_id))

        return self._pool.run(run)

    def _objects_of(self, session: Session, key_id: str) -> _KeyObjects:
        cached = self._objects.get(key_id)
        if cached is not None:
            return cached
        found = self._lookup(session, key_id)
        if found is None:
            raise self._not_found(key_id)
        self._objects[key_id] = found
        return found

    def _lookup(self, session: Session, key_id: str) -> _KeyObjects | None:
        key: int | None = None
        kind: KeyKind | None = None
        public: int | None = None
        foreign = False
        for handle in session.find({lib.CKA_LABEL: key_id}):
            values = session.attributes(handle, templates.KIND_ATTRIBUTES)
            object_class = templates.object_class(values)
            if object_class == lib.CKO_PUBLIC_KEY:
                public = handle
            elif object_class in (lib.CKO_PRIVATE_KEY, lib.CKO_SECRET_KEY) and key is None:
                key, kind = handle, templates.kind_of(values)
                foreign = kind is None
        if foreign:
            raise KeyKindMismatch(
                f"key {key_id!r} on token '{self._token.label}' is of a kind edgekeeper cannot use",
                hint="pick another name, or delete the object with the token's own tools",
            )
        if key is None or kind is None:
            return None
        return _KeyObjects(kind=kind, key=key, public=public if kind.asymmetric else None)

    def _list(self, session: Session) -> list[KeyInfo]:
        infos: dict[str, KeyInfo] = {}
        for object_class in (lib.CKO_PRIVATE_KEY, lib.CKO_SECRET_KEY):
            for handle in session.find({lib.CKA_CLASS: object_class}):
                values = session.attributes(handle, templates.KIND_ATTRIBUTES)
                label = (values.get(lib.CKA_LABEL) or b"").decode("utf-8", errors="replace")
                kind = templates.kind_of(values)
                if kind is None or label in infos or not _valid_name(label):
                    continue
                infos[label] = KeyInfo(key_id=label, kind=kind, backend=self.name)
        return sorted(infos.values(), key=lambda info: info.key_id)

    def _destroy_label(self, session: Session, key_id: str) -> bool:
        """Destroy every object labelled `key_id`; whether there was one."""
        handles = session.find({lib.CKA_LABEL: key_id})
        for handle in handles:
            session.destroy(handle)
        return bool(handles)

    def _require_kind(self, kind: KeyKind) -> None:
        if kind not in self._kinds:
            missing = ", ".join(mechanisms.missing_for_kind(kind, self._mechanisms))
            raise NotSupported(
                f"PKCS#11 token '{self._token.label}' does not offer {kind.value} keys "
                f"(it lacks {missing})",
                hint="choose another backend for this key in [keys.backends]",
            )

    def _sign_mechanism(self, algorithm: SignAlgorithm) -> Mechanism:
        needed = mechanisms.ALGORITHM_MECHANISMS[algorithm]
        if needed not in self._mechanisms:
            raise NotSupported(
                f"PKCS#11 token '{self._token.label}' does not offer {algorithm.value} "
                f"(it lacks {mechanisms.mechanism_name(needed)})",
                hint="choose another backend for this key in [keys.backends]",
            )
        return mechanisms.sign_mechanism(algorithm)

    def _check_hmac_length(self, length: int) -> None:
        """Refuse an HMAC key the token would refuse only when signing (sizes in bytes)."""
        low, high = self._module.key_size_range(self._token.slot, lib.CKM_SHA256_HMAC)
        if not low <= length <= high:
            raise NotSupported(
                f"PKCS#11 token '{self._token.label}' takes HMAC-SHA256 keys of {low} to {high} "
                f"bytes, not {length}",
                hint=f"use a key of at least {low} bytes, or another backend for this key",
            )

    def _not_found(self, key_id: str) -> KeyNotFound:
        return KeyNotFound(f"no key {key_id!r} on PKCS#11 token '{self._token.label}'")


def select_token(module: Pkcs11Module, label: str | None, slot: int | None) -> TokenInfo:
    """The token by slot and/or label; when neither is given, the only initialised token."""
    tokens = module.tokens()
    initialised = [token for token in tokens if token.initialized]
    present = ", ".join(f"'{token.label}' (slot {token.slot})" for token in initialised)
    present = f"tokens present: {present}" if present else "no initialised token is present"
    hint = "set [keys.pkcs11] token_label or slot to one of them, or initialise the token"
    if slot is not None:
        chosen = [token for token in tokens if token.slot == slot]
        if not chosen:
            raise TokenNotFound(f"no token in slot {slot} of {module.path}; {present}", hint=hint)
        if label is not None and chosen[0].label != label:
            raise TokenNotFound(
                f"slot {slot} of {module.path} holds token '{chosen[0].label}', not '{label}'",
                hint=hint,
            )
        return chosen[0]
    if label is not None:
        chosen = [token for token in initialised if token.label == label]
        if not chosen:
            raise TokenNotFound(
                f"PKCS#11 token '{label}' not found in {module.path}; {present}", hint=hint
            )
        return chosen[0]
    if len(initialised) == 1:
        return initialised[0]
    raise TokenNotFound(f"no PKCS#11 token is named for {module.path}; {present}", hint=hint)


def _valid_name(label: str) -> bool:
    try:
        validate_key_name(label)
    except InvalidKeyName:
        return False
    return True


def _check_kind(key_id: str, existing: KeyKind, wanted: KeyKind) -> None:
    if existing is not wanted:
        raise KeyKindMismatch(
            f"key {key_id!r} exists as a {existing.value} key, not {wanted.value}",
            hint="pick another name, or delete the existing key first",
        )


def _check_iv(key_id: str, iv: bytes) -> None:
    low, high = GCM_IV_RANGE
    if not low <= len(iv) <= high:
        raise KeyOperationFailed(
            f"IV for key {key_id!r} is {len(iv)} bytes", hint="use a 12-byte random IV"
        )
