"""Threats: one derived key serves as a module's signing key and its AES-GCM key; a module that
sends the same initializationVector twice gets two ciphertexts under one GCM nonce (their XOR is
the XOR of the plaintexts); the secondary key is the primary. Control: a key per purpose
(`firmware/identity/modules.py`), a nonce the daemon draws per message with the caller's IV bound
as associated data (`firmware/identity/sealed.py`). The primary key, which the hub holds for
every deployed module, keeps its derivation.

The attackers are module containers calling their own workload sockets; the expected keys are
computed here from the device identity key file, by the derivation docs/keys.md gives.
"""

from __future__ import annotations

import base64
import hmac
import os

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

pytestmark = pytest.mark.docker

SAS = b"hub.example.net%2Fdevices%2Fgw%2Fmodules%2Fmod\n1900000000"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def generation(running, module: str) -> str:
    """The generation id the module was given (IOTEDGE_MODULEGENERATIONID)."""
    env = running.module_exec(module, "env").stdout.splitlines()
    prefix = "IOTEDGE_MODULEGENERATIONID="
    return next(line.removeprefix(prefix) for line in env if line.startswith(prefix))


def master_secret(running) -> bytes:
    """The device identity key, as the file backend stores it (a kind line, then the secret)."""
    header, _, secret = (
        (running.data_dir / "keys" / "device-identity.key").read_bytes().partition(b"\n")
    )
    assert header == b"hmac-sha256"
    return secret


def child(master: bytes, prefix: bytes, module: str, genid: str) -> bytes:
    return hmac.digest(master, prefix + module.encode() + b"\0" + genid.encode(), "sha256")


def sas_child(master: bytes, which: str, module: str, genid: str) -> bytes:
    """A SAS key as IoT Edge derives it (and the hub holds it): `{module}:{genid}:{which}`."""
    return hmac.digest(master, f"{module}:{genid}:{which}".encode(), "sha256")


class Module:
    def __init__(self, running, name: str) -> None:
        self.running = running
        self.name = name
        self.genid = generation(running, name)

    def call(self, operation: str, body: dict[str, str], *, as_module: str | None = None):
        target = f"/modules/{as_module or self.name}/genid/{self.genid}/{operation}"
        return self.running.workload(self.name, "POST", target, body)

    def sign(self, key_id: str) -> bytes:
        status, answer = self.call(
            "sign", {"keyId": key_id, "algo": "HMACSHA256", "data": b64(SAS)}
        )
        assert status == 200, answer
        return base64.b64decode(answer["digest"])

    def encrypt(self, plaintext: bytes, iv: bytes) -> bytes:
        body = {"plaintext": b64(plaintext), "initializationVector": b64(iv)}
        status, answer = self.call("encrypt", body)
        assert status == 200, answer
        return base64.b64decode(answer["ciphertext"])

    def decrypt(self, blob: bytes, iv: bytes):
        return self.call("decrypt", {"ciphertext": b64(blob), "initializationVector": b64(iv)})


def test_signing_keys_are_apart_and_the_primary_is_unchanged(gateway, client_image) -> None:
    running = gateway()
    running.deploy("mod", client_image)
    module = Module(running, "mod")
    master = master_secret(running)

    primary, secondary = module.sign("primary"), module.sign("secondary")
    assert primary != secondary
    sas_key = sas_child(master, "primary", "mod", module.genid)
    assert primary == hmac.digest(sas_key, SAS, "sha256")
    secondary_key = sas_child(master, "secondary", "mod", module.genid)
    assert secondary == hmac.digest(secondary_key, SAS, "sha256")


def test_a_reused_iv_leaks_nothing_and_binds_the_ciphertext(gateway, client_image) -> None:
    running = gateway()
    running.deploy("moda", client_image)
    running.deploy("modb", client_image)
    a, b = Module(running, "moda"), Module(running, "modb")
    iv = os.urandom(12)
    one, two = b"pump setpoint: 42 bar", b"valve password: hunter2"

    first, second, again = a.encrypt(one, iv), a.encrypt(two, iv), a.encrypt(one, iv)
    assert first != again
    assert first[:12] != second[:12] != again[:12]
    xor = bytes(x ^ y for x, y in zip(first[12:], second[12:], strict=False))
    assert xor[: len(one)] != bytes(x ^ y for x, y in zip(one, two, strict=False))

    for blob, plaintext in ((first, one), (second, two), (again, one)):
        status, answer = a.decrypt(blob, iv)
        assert status == 200, answer
        assert base64.b64decode(answer["plaintext"]) == plaintext
    status, answer = a.decrypt(first, os.urandom(12))
    assert status == 400 and "tag does not verify" in answer["message"], answer
    status, answer = b.decrypt(first, iv)
    assert status == 400 and "tag does not verify" in answer["message"], answer
    status, answer = b.call(
        "decrypt", {"ciphertext": b64(first), "initializationVector": b64(iv)}, as_module="moda"
    )
    assert status in (403, 404), answer

    # nonce ‖ ciphertext ‖ tag under the encryption key, the IV in the associated data; the
    # signing key (whose HMAC any module can ask for) does not open it.
    master = master_secret(running)
    aad = b"edgekeeper module data\0" + iv
    encryption_key = child(master, b"edgekeeper module encryption\0", "moda", a.genid)
    assert AESGCM(encryption_key).decrypt(first[:12], first[12:], aad) == one
    sas_key = sas_child(master, "primary", "moda", a.genid)
    with pytest.raises(InvalidTag):
        AESGCM(sas_key).decrypt(first[:12], first[12:], aad)
