"""The PKCS#11 backend against a real SoftHSM2 token: operations, errors, the session pool.

Signatures are verified independently with `cryptography`. The shared conformance suite
(test_conformance.py) covers the KeyBackend contract for all backends; this file covers what is
particular to PKCS#11: token selection, PINs, module loading, sessions and threads.
"""

from __future__ import annotations

import hmac
import os
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from firmware.errors import NotSupported
from firmware.keys.backend import Capability, KeyKind, SignAlgorithm
from firmware.keys.errors import (
    KeyBackendUnavailable,
    KeyKindMismatch,
    KeyNotFound,
    KeyOperationFailed,
)
from tests.unit.keys.pkcs11.conftest import ensure_pkcs11_binding

pytestmark = pytest.mark.softhsm


@pytest.fixture(scope="module")
def pkcs11(softhsm: Any) -> Any:
    """The backend module, imported once the binding is built."""
    ensure_pkcs11_binding()
    from firmware.keys.pkcs11 import backend

    return backend


@pytest.fixture
def open_backend(pkcs11: Any, softhsm: Any) -> Iterator[Any]:
    """Opens backends on the shared token (or as told) and closes them after the test."""
    opened: list[Any] = []

    def open_(**overrides: Any) -> Any:
        arguments = {"token_label": softhsm.token_label, "pin": softhsm.user_pin, **overrides}
        module = arguments.pop("module", softhsm.module)
        backend = pkcs11.Pkcs11Backend(module, **arguments)
        opened.append(backend)
        return backend

    yield open_
    for backend in opened:
        backend.close()


@pytest.fixture
def backend(open_backend: Any) -> Any:
    return open_backend()


def _name(prefix: str = "key") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _public(backend: Any, key_id: str) -> Any:
    return serialization.load_der_public_key(backend.public_key(key_id))


def test_describe_lists_what_softhsm_offers(backend: Any, softhsm: Any) -> None:
    info = backend.describe()
    assert info.name == "pkcs11"
    assert info.kinds == frozenset(KeyKind)
    assert info.capabilities == frozenset(Capability)
    assert f"'{softhsm.token_label}'" in info.device
    assert softhsm.module in info.device


def test_create_is_create_if_absent(backend: Any) -> None:
    key_id = _name()
    first = backend.create(key_id, KeyKind.EC_P256)
    public = backend.public_key(key_id)
    second = backend.create(key_id, KeyKind.EC_P256)
    assert first == second
    assert backend.public_key(key_id) == public
    with pytest.raises(KeyKindMismatch, match="exists as a ec-p256 key"):
        backend.create(key_id, KeyKind.AES_256)
    assert backend.info(key_id).kind is KeyKind.EC_P256


def test_ecdsa_signature_verifies_with_cryptography(backend: Any) -> None:
    key_id = _name()
    backend.create(key_id, KeyKind.EC_P256)
    public = _public(backend, key_id)
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert isinstance(public.curve, ec.SECP256R1)
    for message in (b"", b"edge", os.urandom(5000)):
        signature = backend.sign(key_id, SignAlgorithm.ECDSA_SHA256, message)
        public.verify(signature, message, ec.ECDSA(hashes.SHA256()))
        assert backend.verify(key_id, SignAlgorithm.ECDSA_SHA256, message, signature)
        assert not backend.verify(key_id, SignAlgorithm.ECDSA_SHA256, message + b"!", signature)
    assert not backend.verify(key_id, SignAlgorithm.ECDSA_SHA256, b"edge", b"\x30\x02garbage")


def test_ecdsa_verify_accepts_signatures_made_elsewhere(backend: Any) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    key_id = _name()
    backend.import_key(key_id, KeyKind.EC_P256, _pkcs8(key))
    signature = key.sign(b"made by cryptography", ec.ECDSA(hashes.SHA256()))
    assert backend.verify(key_id, SignAlgorithm.ECDSA_SHA256, b"made by cryptography", signature)


def test_rsa_pkcs1_and_pss_signatures_verify_with_cryptography(backend: Any) -> None:
    key_id = _name()
    backend.create(key_id, KeyKind.RSA_2048)
    public = _public(backend, key_id)
    assert isinstance(public, rsa.RSAPublicKey)
    assert public.key_size == 2048
    assert public.public_numbers().e == 65537
    message = b"firmware image digest"

    pkcs1 = backend.sign(key_id, SignAlgorithm.RSA_PKCS1_SHA256, message)
    public.verify(pkcs1, message, padding.PKCS1v15(), hashes.SHA256())
    assert backend.verify(key_id, SignAlgorithm.RSA_PKCS1_SHA256, message, pkcs1)
    assert not backend.verify(key_id, SignAlgorithm.RSA_PKCS1_SHA256, b"other", pkcs1)

    pss = backend.sign(key_id, SignAlgorithm.RSA_PSS_SHA256, message)
    public.verify(pss, message, padding.PSS(padding.MGF1(hashes.SHA256()), 32), hashes.SHA256())
    assert pss != backend.sign(key_id, SignAlgorithm.RSA_PSS_SHA256, message)
    assert backend.verify(key_id, SignAlgorithm.RSA_PSS_SHA256, message, pss)
    assert not backend.verify(
        key_id, SignAlgorithm.RSA_PSS_SHA256, message, pss[:-1] + bytes([pss[-1] ^ 1])
    )
    assert not backend.verify(key_id, SignAlgorithm.RSA_PSS_SHA256, message, pss + b"\0")
    assert not backend.verify(key_id, SignAlgorithm.RSA_PSS_SHA256, message, pss[:100])


def test_hmac_generated_key_signs_and_verifies(backend: Any) -> None:
    key_id = _name()
    backend.create(key_id, KeyKind.HMAC_SHA256)
    mac = backend.sign(key_id, SignAlgorithm.HMAC_SHA256, b"module-id")
    assert len(mac) == 32
    assert backend.sign(key_id, SignAlgorithm.HMAC_SHA256, b"module-id") == mac
    assert backend.verify(key_id, SignAlgorithm.HMAC_SHA256, b"module-id", mac)
    assert not backend.verify(key_id, SignAlgorithm.HMAC_SHA256, b"module-ie", mac)
    assert not backend.verify(key_id, SignAlgorithm.HMAC_SHA256, b"module-id", mac[:16])


def test_hmac_imported_key_matches_the_standard_library(backend: Any) -> None:
    key_id = _name()
    secret = os.urandom(32)
    backend.import_key(key_id, KeyKind.HMAC_SHA256, secret)
    for message in (b"", b"label", os.urandom(3000)):
        expected = hmac.digest(secret, message, "sha256")
        assert backend.sign(key_id, SignAlgorithm.HMAC_SHA256, message) == expected


def test_hmac_key_shorter_than_the_token_takes_is_refused_cleanly(backend: Any) -> None:
    key_id = _name()
    with pytest.raises(NotSupported, match="takes HMAC-SHA256 keys of 32 to"):
        backend.import_key(key_id, KeyKind.HMAC_SHA256, os.urandom(16))
    with pytest.raises(KeyNotFound):
        backend.info(key_id)


def test_aes_gcm_round_trip_and_layout(backend: Any) -> None:
    key_id = _name()
    secret = os.urandom(32)
    backend.import_key(key_id, KeyKind.AES_256, secret)
    iv, aad, plaintext = os.urandom(12), b"module:edgeAgent", b"twin secrets" * 10
    sealed = backend.encrypt(key_id, iv, aad, plaintext)
    assert sealed == AESGCM(secret).encrypt(iv, plaintext, aad)
    assert len(sealed) == len(plaintext) + 16
    assert backend.decrypt(key_id, iv, aad, sealed) == plaintext
    assert backend.decrypt(key_id, iv, b"", backend.encrypt(key_id, iv, b"", b"")) == b""


def test_aes_gcm_detects_tampering(backend: Any) -> None:
    key_id = _name()
    backend.create(key_id, KeyKind.AES_256)
    iv, aad = os.urandom(12), b"aad"
    sealed = backend.encrypt(key_id, iv, aad, b"plaintext")
    flipped_body = bytes([sealed[0] ^ 1]) + sealed[1:]
    flipped_tag = sealed[:-1] + bytes([sealed[-1] ^ 1])
    for iv_, aad_, data in (
        (iv, aad, flipped_body),
        (iv, aad, flipped_tag),
        (iv, b"aaX", sealed),
        (os.urandom(12), aad, sealed),
    ):
        with pytest.raises(KeyOperationFailed, match="tag does not verify"):
            backend.decrypt(key_id, iv_, aad_, data)
    with pytest.raises(KeyOperationFailed, match="shorter than the 16-byte GCM tag"):
        backend.decrypt(key_id, iv, aad, sealed[:15])
    with pytest.raises(KeyOperationFailed, match="IV"):
        backend.encrypt(key_id, b"short", aad, b"x")
    assert backend.decrypt(key_id, iv, aad, sealed) == b"plaintext"


def _pkcs8(key: Any) -> bytes:
    return key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _spki(key: Any) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_import_pairs_keeps_their_public_keys_and_signs(backend: Any) -> None:
    ec_key = ec.generate_private_key(ec.SECP256R1())
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_id, rsa_id = _name(), _name()
    backend.import_key(ec_id, KeyKind.EC_P256, _pkcs8(ec_key))
    backend.import_key(rsa_id, KeyKind.RSA_2048, _pkcs8(rsa_key))
    assert backend.public_key(ec_id) == _spki(ec_key)
    assert backend.public_key(rsa_id) == _spki(rsa_key)
    ec_key.public_key().verify(
        backend.sign(ec_id, SignAlgorithm.ECDSA_SHA256, b"m"), b"m", ec.ECDSA(hashes.SHA256())
    )
    rsa_key.public_key().verify(
        backend.sign(rsa_id, SignAlgorithm.RSA_PKCS1_SHA256, b"m"),
        b"m",
        padding.PKCS1v15(),
        hashes.SHA256(),
    )


def test_import_replaces_an_existing_key(backend: Any) -> None:
    key_id = _name()
    backend.create(key_id, KeyKind.EC_P256)
    replacement = ec.generate_private_key(ec.SECP256R1())
    backend.import_key(key_id, KeyKind.EC_P256, _pkcs8(replacement))
    assert backend.public_key(key_id) == _spki(replacement)
    assert [info.key_id for info in backend.list_keys()].count(key_id) == 1


def test_import_refuses_wrong_material(backend: Any) -> None:
    with pytest.raises(KeyOperationFailed, match="must be 32 bytes"):
        backend.import_key(_name(), KeyKind.AES_256, b"short")
    with pytest.raises(KeyOperationFailed, match="not a rsa-2048 key"):
        backend.import_key(
            _name(), KeyKind.RSA_2048, _pkcs8(ec.generate_private_key(ec.SECP256R1()))
        )
    with pytest.raises(KeyOperationFailed, match="PKCS#8"):
        backend.import_key(_name(), KeyKind.EC_P256, b"not der")


def test_wrong_kind_for_an_operation(backend: Any) -> None:
    aes, ec_id = _name(), _name()
    backend.create(aes, KeyKind.AES_256)
    backend.create(ec_id, KeyKind.EC_P256)
    with pytest.raises(KeyKindMismatch, match="has no public key"):
        backend.public_key(aes)
    with pytest.raises(KeyKindMismatch, match="cannot do hmac-sha256"):
        backend.sign(ec_id, SignAlgorithm.HMAC_SHA256, b"x")
    with pytest.raises(KeyKindMismatch, match="cannot do AES-256-GCM"):
        backend.encrypt(ec_id, os.urandom(12), b"", b"x")


def test_missing_keys_are_key_not_found(backend: Any, softhsm: Any) -> None:
    key_id = _name("absent")
    for call in (
        lambda: backend.info(key_id),
        lambda: backend.public_key(key_id),
        lambda: backend.sign(key_id, SignAlgorithm.ECDSA_SHA256, b"x"),
        lambda: backend.decrypt(key_id, os.urandom(12), b"", bytes(32)),
        lambda: backend.delete(key_id),
    ):
        with pytest.raises(KeyNotFound, match=f"no key '{key_id}' on PKCS#11 token"):
            call()


def test_list_and_delete(backend: Any) -> None:
    made = {_name(): kind for kind in KeyKind}
    for key_id, kind in made.items():
        backend.create(key_id, kind)
    listed = {info.key_id: info.kind for info in backend.list_keys()}
    assert made.items() <= listed.items()
    victim = next(iter(made))
    backend.delete(victim)
    assert victim not in {info.key_id for info in backend.list_keys()}
    with pytest.raises(KeyNotFound):
        backend.info(victim)
    backend.create(victim, KeyKind.RSA_2048)
    assert backend.info(victim).kind is KeyKind.RSA_2048


def test_keys_survive_a_new_backend(open_backend: Any) -> None:
    key_id = _name()
    first = open_backend()
    first.create(key_id, KeyKind.EC_P256)
    public = first.public_key(key_id)
    first.close()
    second = open_backend()
    assert second.public_key(key_id) == public
    assert second.info(key_id).kind is KeyKind.EC_P256


def test_wrong_pin_is_the_pin_incorrect_error(open_backend: Any, softhsm: Any) -> None:
    from firmware.keys.pkcs11.errors import PinIncorrect

    with pytest.raises(PinIncorrect) as caught:
        open_backend(pin="0000")
    error = caught.value
    assert isinstance(error, KeyBackendUnavailable)
    assert error.code == 0xA0
    assert error.name == "CKR_PIN_INCORRECT"
    assert error.function == "C_Login"
    assert error.render() == (
        f"the PIN for token '{softhsm.token_label}' was refused "
        "(check [keys.pkcs11] pin / pin_file)"
    )


def test_a_refused_pin_is_not_sent_again(
    open_backend: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from firmware.keys.pkcs11.binding import Session
    from firmware.keys.pkcs11.errors import PinIncorrect

    with pytest.raises(PinIncorrect):
        open_backend(pin="refused-once")

    def login_again(session: Session, pin: bytes | None) -> None:
        raise AssertionError("a refused PIN was sent to the token again")

    monkeypatch.setattr(Session, "login", login_again)
    with pytest.raises(PinIncorrect):
        open_backend(pin="refused-once")
    monkeypatch.undo()
    assert open_backend().describe().name == "pkcs11"


def test_no_pin_for_a_token_that_needs_one(open_backend: Any, softhsm: Any) -> None:
    from firmware.keys.pkcs11.errors import PinRequired

    with pytest.raises(PinRequired, match=f"token '{softhsm.token_label}' needs a user PIN"):
        open_backend(pin=None)


def test_missing_module_is_a_clear_error(open_backend: Any) -> None:
    from firmware.keys.pkcs11.errors import ModuleLoadFailed

    with pytest.raises(ModuleLoadFailed) as caught:
        open_backend(module="/usr/lib/x.so")
    assert isinstance(caught.value, KeyBackendUnavailable)
    assert caught.value.message.startswith("PKCS#11 module /usr/lib/x.so cannot be loaded: ")
    assert "[keys.pkcs11] module" in caught.value.render()


def test_unknown_token_label_names_the_labels_present(open_backend: Any, softhsm: Any) -> None:
    from firmware.keys.pkcs11.errors import TokenNotFound

    with pytest.raises(TokenNotFound) as caught:
        open_backend(token_label="no-such-token")
    message = caught.value.message
    assert message.startswith(f"PKCS#11 token 'no-such-token' not found in {softhsm.module}")
    assert "; tokens present: " in message
    assert f"'{softhsm.token_label}' (slot " in message.split("; tokens present: ", 1)[1]
    assert "token_label" in (caught.value.hint or "")


def test_token_chosen_by_slot(open_backend: Any, backend: Any, softhsm: Any) -> None:
    from firmware.keys.pkcs11.errors import TokenNotFound

    by_slot = open_backend(token_label=None, slot=backend.token.slot)
    assert by_slot.token.label == softhsm.token_label
    with pytest.raises(TokenNotFound, match=f"holds token '{softhsm.token_label}', not 'other'"):
        open_backend(token_label="other", slot=backend.token.slot)
    with pytest.raises(TokenNotFound, match="no token in slot 4242"):
        open_backend(token_label=None, slot=4242)


def test_pin_file(open_backend: Any, softhsm: Any, tmp_path: Path) -> None:
    from firmware.keys.pkcs11.errors import PinFileRefused

    pin_file = tmp_path / "token.pin"
    pin_file.write_text(softhsm.user_pin + "\n")
    pin_file.chmod(0o644)
    with pytest.raises(PinFileRefused, match=r"readable by others \(mode 0644\)"):
        open_backend(pin=None, pin_file=pin_file)
    pin_file.chmod(0o600)
    assert open_backend(pin=None, pin_file=pin_file).describe().name == "pkcs11"


def test_pool_recovers_from_a_closed_session(backend: Any) -> None:
    key_id = _name()
    backend.create(key_id, KeyKind.EC_P256)
    public = _public(backend, key_id)
    dead = backend.pool.run(lambda session: (session.close(), session.handle)[1])
    signature = backend.sign(key_id, SignAlgorithm.ECDSA_SHA256, b"after")
    public.verify(signature, b"after", ec.ECDSA(hashes.SHA256()))
    assert backend.pool.run(lambda session: session.handle) != dead


def test_pool_logs_in_again_after_every_session_was_closed(backend: Any) -> None:
    key_id = _name()
    backend.create(key_id, KeyKind.HMAC_SHA256)

    def close_all(session: Any) -> None:
        session.module.functions.C_CloseAllSessions(session.token.slot)

    backend.pool.run(close_all)
    assert backend.pool.run(lambda session: session.logged_in()) is True
    assert len(backend.sign(key_id, SignAlgorithm.HMAC_SHA256, b"x")) == 32


def test_concurrent_use_from_several_threads(
    open_backend: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from firmware.keys.pkcs11.binding import Pkcs11Module, Session  # built by open_backend

    live: set[int] = set()
    most = 0
    counting = threading.Lock()
    open_session, close = Pkcs11Module.open_session, Session.close

    def opened(module: Any, token: Any) -> Any:
        nonlocal most
        session = open_session(module, token)
        with counting:
            live.add(session.handle)
            most = max(most, len(live))
        return session

    def closed(session: Any) -> None:
        with counting:
            live.discard(session.handle)
        close(session)

    monkeypatch.setattr(Pkcs11Module, "open_session", opened)
    monkeypatch.setattr(Session, "close", closed)
    backend = open_backend(max_sessions=3)
    ec_id, hmac_id, aes_id = _name(), _name(), _name()
    backend.create(ec_id, KeyKind.EC_P256)
    secret = os.urandom(32)
    backend.import_key(hmac_id, KeyKind.HMAC_SHA256, secret)
    backend.create(aes_id, KeyKind.AES_256)
    public = _public(backend, ec_id)

    def work(index: int) -> None:
        message = f"message {index}".encode()
        signature = backend.sign(ec_id, SignAlgorithm.ECDSA_SHA256, message)
        public.verify(signature, message, ec.ECDSA(hashes.SHA256()))
        assert backend.sign(hmac_id, SignAlgorithm.HMAC_SHA256, message) == hmac.digest(
            secret, message, "sha256"
        )
        iv = os.urandom(12)
        assert backend.decrypt(aes_id, iv, b"", backend.encrypt(aes_id, iv, b"", message)) == (
            message
        )

    with ThreadPoolExecutor(max_workers=8) as executor:
        list(executor.map(work, range(200)))
    assert 1 <= most <= 3, "the pool opened more sessions than max_sessions"


def test_closed_backend_refuses_calls(open_backend: Any) -> None:
    backend = open_backend()
    backend.close()
    with pytest.raises(KeyBackendUnavailable, match="closed"):
        backend.list_keys()


def test_token_found_again_after_its_slot_changed(backend: Any) -> None:
    """A module that renumbers slots after a re-plug is simulated by pointing the backend at a
    slot that does not exist once every session has died."""
    import dataclasses

    key_id = _name()
    backend.create(key_id, KeyKind.HMAC_SHA256)
    real = backend.token
    backend.pool.run(lambda session: session.module.functions.C_CloseAllSessions(real.slot))
    backend._token = dataclasses.replace(real, slot=4242)
    assert len(backend.sign(key_id, SignAlgorithm.HMAC_SHA256, b"x")) == 32
    assert backend.token == real


def _resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_many_operations_do_not_grow_memory(backend: Any) -> None:
    ids = {kind: _name("leak") for kind in KeyKind}
    for kind, key_id in ids.items():
        backend.create(key_id, kind)

    def operations(count: int) -> None:
        for _ in range(count):
            backend.sign(ids[KeyKind.EC_P256], SignAlgorithm.ECDSA_SHA256, b"x")
            backend.sign(ids[KeyKind.HMAC_SHA256], SignAlgorithm.HMAC_SHA256, b"x")
            iv = os.urandom(12)
            sealed = backend.encrypt(ids[KeyKind.AES_256], iv, b"aad", b"y" * 100)
            backend.decrypt(ids[KeyKind.AES_256], iv, b"aad", sealed)
            backend.public_key(ids[KeyKind.RSA_2048])

    operations(1000)
    before = _resident_bytes()
    operations(4000)
    grown = _resident_bytes() - before
    assert grown < 2 * 1024 * 1024, f"resident memory grew by {grown} bytes over 20000 calls"


def test_locked_pin_is_reported_without_trying_to_log_in(
    open_backend: Any, monkeypatch: pytest.MonkeyPatch, softhsm: Any
) -> None:
    """SoftHSM2 never locks its PIN, so the token's flags are made to say it is locked."""
    import dataclasses

    from firmware.keys.pkcs11.binding import Pkcs11Module, Session, lib
    from firmware.keys.pkcs11.errors import PinLocked

    real_token = Pkcs11Module.token

    def locked(module: Pkcs11Module, slot: int) -> Any:
        info = real_token(module, slot)
        return dataclasses.replace(info, flags=info.flags | lib.CKF_USER_PIN_LOCKED)

    def login(session: Session, pin: bytes | None) -> None:
        raise AssertionError("tried to log in to a locked token")

    monkeypatch.setattr(Pkcs11Module, "token", locked)
    monkeypatch.setattr(Session, "login", login)
    with pytest.raises(PinLocked) as caught:
        open_backend()
    assert caught.value.code == 0xA4
    assert caught.value.message == f"the user PIN of token '{softhsm.token_label}' is locked"
    assert "security officer PIN" in (caught.value.hint or "")
