"""DPS TPM attestation's challenge against a fresh swtpm per test: the blob DPS sends (built by
tests/peers/tpm_challenge.py) is activated and imported, the TPM's HMAC equals the software HMAC
with the key DPS chose, and the committed identity key survives everything short of `commit`: a
second import, a restart before commit, a corrupted or misdirected blob, a stale object in the
free slot (iotedge#6638)."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from tpm2_pytss import ESYS_TR

from firmware.errors import ConfigError
from firmware.keys.tpm import TpmBackend
from firmware.keys.tpm.attestation import TpmAttestation
from firmware.tpm.connection import TpmConnection
from firmware.tpm.endorsement import EK_HANDLE, SRK_HANDLE
from firmware.tpm.errors import AuthenticationKeyMalformed, AuthKeyMissing, TpmCommandFailed
from firmware.tpm.srk import STORAGE_HANDLE, storage_key_template
from tests.integration.tpm.tpm_inspect import persistent_handles
from tests.peers.tpm_challenge import make_challenge

pytestmark = pytest.mark.swtpm

FIRST, SECOND = 0x81000100, 0x81000101
KEY_1, KEY_2 = b"first dps key".ljust(32, b"."), b"second dps key".ljust(32, b".")
SHORT, LONG = b"scope/registrations/id\n1700000000", bytes(range(256)) * 9


def software(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


@pytest.fixture
def gateway(fresh_swtpm, tmp_path):
    """Open a TPM backend on the fresh swtpm and its attestation; reopening simulates a restart."""
    opened: list[TpmBackend] = []

    def open_one(**options) -> tuple[TpmBackend, TpmAttestation]:
        for backend in opened:
            backend.close()
        opened.append(TpmBackend(fresh_swtpm.tcti, tmp_path / "tpm-keys", **options))
        return opened[-1], opened[-1].attestation(0x100)

    yield open_one
    for backend in opened:
        backend.close()


def challenge(attestation: TpmAttestation, key: bytes) -> bytes:
    return make_challenge(attestation.endorsement_key(), attestation.storage_root_key(), key)


def test_imported_key_macs_like_dps_key_in_software(gateway):
    backend, attestation = gateway()
    with pytest.raises(AuthKeyMissing):
        attestation.hmac(SHORT)
    handle = attestation.import_key(challenge(attestation, KEY_1))
    assert handle == FIRST
    assert attestation.hmac(SHORT, handle) == software(KEY_1, SHORT)
    attestation.commit(handle)
    assert attestation.hmac(SHORT) == software(KEY_1, SHORT)
    assert attestation.hmac(LONG) == software(KEY_1, LONG)  # an HMAC sequence (> 1024 bytes)
    assert persistent_handles(backend._tpm) == [SRK_HANDLE, STORAGE_HANDLE, FIRST, EK_HANDLE]


def test_a_second_import_keeps_the_old_key_until_commit(gateway):
    _, attestation = gateway()
    attestation.commit(attestation.import_key(challenge(attestation, KEY_1)))
    new = attestation.import_key(challenge(attestation, KEY_2))
    assert new == SECOND
    assert attestation.hmac(SHORT) == software(KEY_1, SHORT)
    assert attestation.hmac(SHORT, new) == software(KEY_2, SHORT)
    backend, attestation = gateway()  # a restart between import and commit
    assert attestation.hmac(SHORT) == software(KEY_1, SHORT)
    attestation.commit(new)
    assert attestation.hmac(SHORT) == software(KEY_2, SHORT)
    assert FIRST not in persistent_handles(backend._tpm)
    assert attestation.import_key(challenge(attestation, KEY_1)) == FIRST  # slots alternate


def test_a_bad_blob_fails_without_touching_the_current_key(gateway):
    backend, attestation = gateway()
    attestation.commit(attestation.import_key(challenge(attestation, KEY_1)))
    good = challenge(attestation, KEY_2)
    with pytest.raises(AuthenticationKeyMalformed) as truncated:
        attestation.import_key(good[:100])
    assert "authenticationKey is malformed" in truncated.value.message
    tampered = bytearray(good)
    tampered[good.index(b"\x00", 300) + 40] ^= 0x01  # inside the encrypted duplicate
    misdirected = make_challenge(  # bound to the EK's name, not the SRK's
        attestation.endorsement_key(), attestation.endorsement_key(), KEY_2
    )
    for blob in (bytes(tampered), misdirected):
        with pytest.raises(TpmCommandFailed):
            attestation.import_key(blob)
        assert attestation.hmac(SHORT) == software(KEY_1, SHORT)
    assert FIRST in persistent_handles(backend._tpm)
    attestation.commit(attestation.import_key(good))  # and the next good one goes in
    assert attestation.hmac(SHORT) == software(KEY_2, SHORT)


def persist_stale_object(backend: TpmBackend, handle: int) -> None:
    def op(esapi):
        transient, *_ = esapi.create_primary(None, storage_key_template(), ESYS_TR.OWNER)
        esapi.tr_close(esapi.evict_control(ESYS_TR.OWNER, transient, handle))
        esapi.flush_context(transient)

    backend._tpm.run("leaving a stale object behind", op)


def test_a_stale_object_in_the_free_slot_is_evicted_first(gateway):
    backend, attestation = gateway()
    persist_stale_object(backend, FIRST)  # e.g. what an earlier IoT Edge install left there
    attestation.commit(attestation.import_key(challenge(attestation, KEY_1)))
    assert attestation.hmac(SHORT) == software(KEY_1, SHORT)
    persist_stale_object(backend, SECOND)  # e.g. a crash after import, before commit
    attestation.commit(attestation.import_key(challenge(attestation, KEY_2)))
    assert attestation.hmac(SHORT) == software(KEY_2, SHORT)


def test_an_endorsement_password_is_used_for_the_policy(gateway, fresh_swtpm):
    backend, attestation = gateway()
    blob = challenge(attestation, KEY_1)
    backend.close()
    setter = TpmConnection(fresh_swtpm.tcti)
    setter.run(
        "setting an endorsement password",
        lambda esapi: esapi.hierarchy_change_auth(ESYS_TR.ENDORSEMENT, b"endorsement secret"),
    )
    setter.close()
    _, attestation = gateway()
    with pytest.raises(TpmCommandFailed) as caught:
        attestation.import_key(blob)
    assert "importing the DPS authentication key" in caught.value.message
    _, attestation = gateway(endorsement_auth="endorsement secret")
    attestation.commit(attestation.import_key(blob))
    assert attestation.hmac(SHORT) == software(KEY_1, SHORT)


def test_the_last_auth_key_index_leaves_no_room_for_a_second_slot(gateway):
    backend, _ = gateway()
    with pytest.raises(ConfigError) as caught:
        backend.attestation(0x7FFFFF)
    assert "auth_key_index" in caught.value.message
