"""The TPM key backend against a real swtpm: every operation checked independently.

Signatures are verified with `cryptography` from the exported public key; MACs and GCM results
are compared with software computations only where the key was imported (known material). The
backend must survive being re-created, swtpm being killed and restarted, and a TPM power cycle
that leaves it waiting for TPM2_Startup.
"""

from __future__ import annotations

import hmac
import os
import shutil
import subprocess
import threading

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from firmware.errors import DeviceError
from firmware.keys.backend import Capability, KeyKind, SignAlgorithm
from firmware.keys.errors import KeyKindMismatch, KeyNotFound, KeyOperationFailed
from firmware.keys.tpm import TpmBackend
from firmware.tpm.connection import TpmConnection

pytestmark = pytest.mark.swtpm

DATA = b"edgekeeper tpm backend \x00\xff" * 5
PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO)


@pytest.fixture
def open_backend(swtpm, tmp_path):
    """Open backends over the shared swtpm and one key directory; all closed at the end."""
    opened: list[TpmBackend] = []

    def open_one() -> TpmBackend:
        backend = TpmBackend(
            swtpm.tcti, tmp_path / "tpm-keys", connection=TpmConnection(swtpm.tcti)
        )
        opened.append(backend)
        return backend

    yield open_one
    for backend in opened:
        backend.close()


def resets(backend: TpmBackend) -> int:
    return backend._tpm.resets


def public(backend: TpmBackend, key_id: str):
    return serialization.load_der_public_key(backend.public_key(key_id))


def pkcs8(private) -> bytes:
    return private.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def test_describe_is_honest(open_backend, swtpm):
    info = open_backend().describe()
    assert info.name == "tpm"
    assert info.device == swtpm.tcti
    assert info.kinds == frozenset(KeyKind)
    assert Capability.ENCRYPT in info.capabilities


def test_ecdsa_signature_verified_by_cryptography(open_backend):
    backend = open_backend()
    backend.create("ec", KeyKind.EC_P256)
    key = public(backend, "ec")
    assert isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1)
    signature = backend.sign("ec", SignAlgorithm.ECDSA_SHA256, DATA)
    key.verify(signature, DATA, ec.ECDSA(hashes.SHA256()))
    with pytest.raises(InvalidSignature):
        key.verify(signature, DATA + b"!", ec.ECDSA(hashes.SHA256()))
    assert backend.verify("ec", SignAlgorithm.ECDSA_SHA256, DATA, signature)
    assert not backend.verify("ec", SignAlgorithm.ECDSA_SHA256, DATA + b"!", signature)


def test_one_rsa_key_signs_pkcs1_and_pss(open_backend):
    backend = open_backend()
    backend.create("rsa", KeyKind.RSA_2048)
    key = public(backend, "rsa")
    assert isinstance(key, rsa.RSAPublicKey) and key.key_size == 2048
    pkcs1 = backend.sign("rsa", SignAlgorithm.RSA_PKCS1_SHA256, DATA)
    key.verify(pkcs1, DATA, padding.PKCS1v15(), hashes.SHA256())
    pss = backend.sign("rsa", SignAlgorithm.RSA_PSS_SHA256, DATA)
    key.verify(pss, DATA, PSS, hashes.SHA256())
    with pytest.raises(InvalidSignature):
        key.verify(pss, DATA, padding.PKCS1v15(), hashes.SHA256())
    assert backend.verify("rsa", SignAlgorithm.RSA_PSS_SHA256, DATA, pss)
    assert not backend.verify("rsa", SignAlgorithm.RSA_PKCS1_SHA256, DATA, pss)


def test_generated_hmac_and_aes(open_backend):
    backend = open_backend()
    backend.create("mac", KeyKind.HMAC_SHA256)
    backend.create("aes", KeyKind.AES_256)
    tag = backend.sign("mac", SignAlgorithm.HMAC_SHA256, DATA)
    assert len(tag) == 32
    assert backend.sign("mac", SignAlgorithm.HMAC_SHA256, DATA) == tag
    assert backend.sign("mac", SignAlgorithm.HMAC_SHA256, DATA + b"!") != tag
    assert backend.verify("mac", SignAlgorithm.HMAC_SHA256, DATA, tag)
    assert not backend.verify("mac", SignAlgorithm.HMAC_SHA256, DATA, bytes(32))
    iv = os.urandom(12)
    sealed = backend.encrypt("aes", iv, b"aad", DATA)
    assert len(sealed) == len(DATA) + 16
    assert backend.decrypt("aes", iv, b"aad", sealed) == DATA
    with pytest.raises(KeyOperationFailed):
        backend.decrypt("aes", iv, b"other aad", sealed)
    with pytest.raises(KeyKindMismatch):
        backend.encrypt("mac", iv, b"", DATA)
    with pytest.raises(KeyKindMismatch):
        backend.public_key("aes")


@pytest.mark.parametrize("length", [16, 32, 64, 100, 128])
def test_imported_hmac_matches_software_for_short_and_long_data(open_backend, length):
    backend = open_backend()
    secret = os.urandom(length)
    backend.import_key("mac", KeyKind.HMAC_SHA256, secret)
    for data in (b"", DATA, os.urandom(1024), os.urandom(1025), os.urandom(5000)):
        assert backend.sign("mac", SignAlgorithm.HMAC_SHA256, data) == hmac.digest(
            secret, data, "sha256"
        )


def test_imported_aes_matches_cryptography(open_backend):
    backend = open_backend()
    secret = os.urandom(32)
    backend.import_key("aes", KeyKind.AES_256, secret)
    iv = os.urandom(12)
    sealed = backend.encrypt("aes", iv, b"hdr", DATA)
    assert sealed == AESGCM(secret).encrypt(iv, DATA, b"hdr")
    assert backend.decrypt("aes", iv, b"hdr", AESGCM(secret).encrypt(iv, b"x", b"hdr")) == b"x"
    with pytest.raises(KeyOperationFailed):
        backend.import_key("short", KeyKind.AES_256, secret[:16])


def test_imported_pairs_keep_their_public_keys(open_backend):
    backend = open_backend()
    ec_private = ec.generate_private_key(ec.SECP256R1())
    rsa_private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    backend.import_key("ec", KeyKind.EC_P256, pkcs8(ec_private))
    backend.import_key("rsa", KeyKind.RSA_2048, pkcs8(rsa_private))
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    assert backend.public_key("ec") == ec_private.public_key().public_bytes(der, spki)
    assert backend.public_key("rsa") == rsa_private.public_key().public_bytes(der, spki)
    signature = backend.sign("ec", SignAlgorithm.ECDSA_SHA256, DATA)
    ec_private.public_key().verify(signature, DATA, ec.ECDSA(hashes.SHA256()))
    # PKCS#1 v1.5 is deterministic: the TPM must produce exactly what software produces.
    assert backend.sign("rsa", SignAlgorithm.RSA_PKCS1_SHA256, DATA) == rsa_private.sign(
        DATA, padding.PKCS1v15(), hashes.SHA256()
    )
    with pytest.raises(KeyOperationFailed):
        backend.import_key("wrong", KeyKind.RSA_2048, pkcs8(ec_private))


def test_create_if_absent_kind_check_list_delete(open_backend, tmp_path):
    backend = open_backend()
    backend.create("pair", KeyKind.EC_P256)
    der = backend.public_key("pair")
    backend.create("pair", KeyKind.EC_P256)
    assert backend.public_key("pair") == der
    with pytest.raises(KeyKindMismatch):
        backend.create("pair", KeyKind.RSA_2048)
    backend.create("mac", KeyKind.HMAC_SHA256)
    assert {(k.key_id, k.kind) for k in backend.list_keys()} == {
        ("pair", KeyKind.EC_P256),
        ("mac", KeyKind.HMAC_SHA256),
    }
    assert backend.info("mac").kind is KeyKind.HMAC_SHA256
    key_file = tmp_path / "tpm-keys" / "pair.tpmkey"
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    backend.delete("pair")
    assert not key_file.exists()
    for call in (lambda: backend.public_key("pair"), lambda: backend.info("pair")):
        with pytest.raises(KeyNotFound):
            call()
    with pytest.raises(KeyNotFound):
        backend.sign("gone", SignAlgorithm.HMAC_SHA256, DATA)


def test_keys_persist_across_backend_recreation(open_backend):
    first = open_backend()
    first.create("ec", KeyKind.EC_P256)
    first.import_key("mac", KeyKind.HMAC_SHA256, b"k" * 32)
    der = first.public_key("ec")
    tag = first.sign("mac", SignAlgorithm.HMAC_SHA256, DATA)
    first.close()
    second = open_backend()
    assert second.public_key("ec") == der
    signature = second.sign("ec", SignAlgorithm.ECDSA_SHA256, DATA)
    public(second, "ec").verify(signature, DATA, ec.ECDSA(hashes.SHA256()))
    assert second.sign("mac", SignAlgorithm.HMAC_SHA256, DATA) == tag


def _make_all_kinds(backend: TpmBackend) -> dict[str, object]:
    for kind in KeyKind:
        backend.create(kind.value, kind)
    iv = os.urandom(12)
    return {
        "der": backend.public_key("ec-p256"),
        "hmac": backend.sign("hmac-sha256", SignAlgorithm.HMAC_SHA256, DATA),
        "pkcs1": backend.sign("rsa-2048", SignAlgorithm.RSA_PKCS1_SHA256, DATA),
        "iv": iv,
        "sealed": backend.encrypt("aes-256", iv, b"", DATA),
    }


def _check_all_kinds(backend: TpmBackend, before: dict[str, object]) -> None:
    assert backend.sign("hmac-sha256", SignAlgorithm.HMAC_SHA256, DATA) == before["hmac"]
    assert backend.sign("rsa-2048", SignAlgorithm.RSA_PKCS1_SHA256, DATA) == before["pkcs1"]
    assert backend.public_key("ec-p256") == before["der"]
    signature = backend.sign("ec-p256", SignAlgorithm.ECDSA_SHA256, DATA)
    public(backend, "ec-p256").verify(signature, DATA, ec.ECDSA(hashes.SHA256()))
    assert backend.decrypt("aes-256", before["iv"], b"", before["sealed"]) == DATA


def test_swtpm_killed_and_restarted_keys_still_work(open_backend, swtpm):
    backend = open_backend()
    before = _make_all_kinds(backend)
    resets_before = resets(backend)
    swtpm.restart()  # SIGKILL, then a new swtpm on the same state: every loaded object is gone
    _check_all_kinds(backend, before)
    assert resets(backend) > resets_before  # the blobs really were loaded again
    backend.close()  # swtpm has no resource manager: one client holds its three object slots
    _check_all_kinds(open_backend(), before)


def test_power_cycle_waiting_for_startup(open_backend, swtpm):
    swtpm_ioctl = shutil.which("swtpm_ioctl")
    assert swtpm_ioctl, "swtpm_ioctl is missing: install the Debian package swtpm-tools"
    backend = open_backend()
    before = _make_all_kinds(backend)
    resets_before = resets(backend)
    # CMD_INIT on the control channel: a TPM reset on the same connection; the TPM now answers
    # every command with TPM_RC_INITIALIZE until someone sends TPM2_Startup.
    subprocess.run(
        [swtpm_ioctl, "--tcp", f"{swtpm.host}:{swtpm.ctrl_port}", "-i"], check=True, timeout=30
    )
    _check_all_kinds(backend, before)
    assert resets(backend) > resets_before


def test_more_keys_than_tpm_object_slots(open_backend):
    backend = open_backend()
    names = [f"k{i}" for i in range(6)]
    for name in names:
        backend.create(name, KeyKind.EC_P256)
    keys = {name: public(backend, name) for name in names}
    for _round in range(3):
        for name in names:
            signature = backend.sign(name, SignAlgorithm.ECDSA_SHA256, DATA)
            keys[name].verify(signature, DATA, ec.ECDSA(hashes.SHA256()))
    assert len(backend._tpm.objects) <= 3  # swtpm has three transient slots


def test_threads_share_one_backend(open_backend):
    backend = open_backend()
    backend.create("ec", KeyKind.EC_P256)
    backend.import_key("mac", KeyKind.HMAC_SHA256, b"s" * 32)
    key = public(backend, "ec")
    failures: list[BaseException] = []

    def work(index: int) -> None:
        try:
            for n in range(15):
                data = f"{index}:{n}".encode()
                key.verify(
                    backend.sign("ec", SignAlgorithm.ECDSA_SHA256, data),
                    data,
                    ec.ECDSA(hashes.SHA256()),
                )
                mac = backend.sign("mac", SignAlgorithm.HMAC_SHA256, data)
                assert mac == hmac.digest(b"s" * 32, data, "sha256")
        except BaseException as exc:  # collected and re-raised in the test thread
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not failures, failures


def test_closed_port_is_a_clear_device_error(tmp_path):
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(DeviceError) as caught:
        TpmBackend(f"swtpm:host=127.0.0.1,port={port}", tmp_path / "keys")
    assert f"no TPM simulator at 127.0.0.1:{port}" in caught.value.message
    assert "connection refused" in caught.value.message
    assert "[tpm] device" in caught.value.hint
