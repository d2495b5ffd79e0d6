"""TPM set-up against a fresh swtpm per test: the storage key, a cleared TPM, lockout.

Each test gets its own simulator (empty TPM state) because it changes the TPM's owner state;
the shared session swtpm stays untouched.
"""

from __future__ import annotations

import pytest
from tpm2_pytss import ESYS_TR
from tpm2_pytss.constants import TPM2_ALG, TPM2_ECC, TPMA_OBJECT
from tpm2_pytss.types import TPM2B_PUBLIC, TPM2B_SENSITIVE_CREATE, TPMS_SENSITIVE_CREATE

from firmware.keys.backend import KeyKind, SignAlgorithm
from firmware.keys.errors import KeyBackendUnavailable
from firmware.keys.tpm import TpmBackend
from firmware.tpm.errors import TpmCommandFailed, TpmLockout, TpmSetupError
from firmware.tpm.srk import STORAGE_HANDLE
from tests.integration.tpm.tpm_inspect import persistent_handles

pytestmark = pytest.mark.swtpm


def test_srk_created_when_absent_then_reused(connect):
    first = connect()
    assert persistent_handles(first) == []
    name = first.run("setting up", first.srk_name)
    assert persistent_handles(first) == [STORAGE_HANDLE]
    public = first.run("reading", first.srk_public).publicArea
    assert public.type == TPM2_ALG.ECC
    assert public.parameters.eccDetail.curveID == TPM2_ECC.NIST_P256
    storage = TPMA_OBJECT.RESTRICTED | TPMA_OBJECT.DECRYPT | TPMA_OBJECT.NODA
    assert public.objectAttributes & storage == storage
    tpm_name = first.run("reading", lambda esapi: bytes(esapi.read_public(first.srk(esapi))[1]))
    assert name == tpm_name
    first.close()
    second = connect()
    assert second.run("setting up", second.srk_name) == name
    assert persistent_handles(second) == [STORAGE_HANDLE]


def test_srk_made_again_from_the_template_is_the_same_key(connect, tmp_path):
    tpm = connect()
    backend = TpmBackend("", tmp_path / "keys", connection=tpm)
    backend.create("mac", KeyKind.HMAC_SHA256)
    tag = backend.sign("mac", SignAlgorithm.HMAC_SHA256, b"data")
    name = tpm.run("naming", tpm.srk_name)
    backend.close()
    evictor = connect()
    evictor.run(
        "evicting the SRK",
        lambda esapi: esapi.evict_control(ESYS_TR.OWNER, evictor.srk(esapi), STORAGE_HANDLE),
    )
    evictor.close()
    again = connect()
    assert STORAGE_HANDLE not in persistent_handles(again)
    backend = TpmBackend("", tmp_path / "keys", connection=again)
    assert again.run("naming", again.srk_name) == name
    assert backend.sign("mac", SignAlgorithm.HMAC_SHA256, b"data") == tag
    backend.close()


def test_foreign_object_at_the_srk_handle_is_refused_with_the_fix(connect, tmp_path):
    tpm = connect()

    def persist_signing_key(esapi):
        template = TPM2B_PUBLIC.parse(
            "ecc256:ecdsa-sha256",
            objectAttributes=TPMA_OBJECT.SIGN_ENCRYPT
            | TPMA_OBJECT.FIXEDTPM
            | TPMA_OBJECT.FIXEDPARENT
            | TPMA_OBJECT.SENSITIVEDATAORIGIN
            | TPMA_OBJECT.USERWITHAUTH,
        )
        handle, *_ = esapi.create_primary(None, template)
        esapi.evict_control(ESYS_TR.OWNER, handle, STORAGE_HANDLE)
        esapi.flush_context(handle)

    tpm.run("persisting a signing key", persist_signing_key)
    tpm.close()
    refused = connect()
    with pytest.raises(TpmSetupError) as caught:
        refused.run("setting up", refused.srk)
    assert "0x81000002 is not a storage key" in caught.value.message
    assert "tpm2_evictcontrol" in caught.value.hint
    with pytest.raises(KeyBackendUnavailable, match="not a storage key"):
        TpmBackend("", tmp_path / "keys", connection=connect())


def test_cleared_tpm_leaves_keys_orphaned_with_a_clear_error(connect, tmp_path):
    tpm = connect()
    backend = TpmBackend("", tmp_path / "keys", connection=tpm)
    backend.create("ec", KeyKind.EC_P256)
    backend.close()
    clearer = connect()
    clearer.run("clearing the TPM", lambda esapi: esapi.clear(ESYS_TR.LOCKOUT))
    clearer.close()
    backend = TpmBackend("", tmp_path / "keys", connection=connect())  # makes a new SRK
    with pytest.raises(KeyBackendUnavailable) as caught:
        backend.sign("ec", SignAlgorithm.ECDSA_SHA256, b"data")
    assert "belongs to another storage root key" in caught.value.message
    assert "create or import it again" in caught.value.hint
    backend.create("fresh", KeyKind.EC_P256)  # the backend itself keeps working
    backend.sign("fresh", SignAlgorithm.ECDSA_SHA256, b"data")
    backend.close()


def test_lockout_is_a_clear_device_error(connect):
    tpm = connect()
    password = b"right password"

    def make_protected_key(esapi):
        # An HMAC key that, unlike edgekeeper's keys, has a password and no noDA.
        template = TPM2B_PUBLIC.parse(
            "hmac:sha256",
            objectAttributes=TPMA_OBJECT.SIGN_ENCRYPT
            | TPMA_OBJECT.FIXEDTPM
            | TPMA_OBJECT.FIXEDPARENT
            | TPMA_OBJECT.SENSITIVEDATAORIGIN
            | TPMA_OBJECT.USERWITHAUTH,
        )
        sensitive = TPM2B_SENSITIVE_CREATE(sensitive=TPMS_SENSITIVE_CREATE(userAuth=password))
        private, public, *_ = esapi.create(tpm.srk(esapi), sensitive, template)
        esapi.dictionary_attack_parameters(1, 600, 600)
        return esapi.load(tpm.srk(esapi), private, public)

    key = tpm.run("making a protected key", make_protected_key)

    def hmac_with(auth):
        def op(esapi):
            esapi.tr_set_auth(key, auth)
            return bytes(esapi.hmac(key, b"data", TPM2_ALG.SHA256))

        return op

    with pytest.raises(TpmCommandFailed):
        tpm.run("computing an HMAC with a wrong password", hmac_with(b"wrong"))
    with pytest.raises(TpmLockout) as caught:
        tpm.run("computing an HMAC", hmac_with(password))
    assert "is in dictionary-attack lockout while computing an HMAC" in caught.value.message
    assert "tpm2_dictionarylockout -c" in caught.value.hint
    tpm.run("resetting the lockout", lambda esapi: esapi.dictionary_attack_lock_reset())
    assert len(tpm.run("computing an HMAC", hmac_with(password))) == 32
    tpm.run("flushing", lambda esapi: esapi.flush_context(key))


def test_tpm_gone_is_a_device_error_and_comes_back(fresh_swtpm, tmp_path):
    backend = TpmBackend(fresh_swtpm.tcti, tmp_path / "keys")
    try:
        backend.import_key("mac", KeyKind.HMAC_SHA256, b"m" * 32)
        tag = backend.sign("mac", SignAlgorithm.HMAC_SHA256, b"data")
        fresh_swtpm.stop()
        with pytest.raises(KeyBackendUnavailable) as caught:
            backend.sign("mac", SignAlgorithm.HMAC_SHA256, b"data")
        assert f"127.0.0.1:{fresh_swtpm.port}" in caught.value.message
        assert "[tpm] device" in caught.value.hint
        fresh_swtpm.start()
        assert backend.sign("mac", SignAlgorithm.HMAC_SHA256, b"data") == tag
    finally:
        backend.close()


def test_owner_password_is_needed_to_create_the_srk(connect, fresh_swtpm, tmp_path):
    setter = connect()
    setter.run(
        "setting an owner password",
        lambda esapi: esapi.hierarchy_change_auth(ESYS_TR.OWNER, b"owner secret"),
    )
    setter.close()
    with pytest.raises(KeyBackendUnavailable) as caught:
        TpmBackend(fresh_swtpm.tcti, tmp_path / "keys")
    assert "cannot create the storage key at 0x81000002" in caught.value.message
    assert "[tpm.hierarchy_authorization] owner" in caught.value.hint
    backend = TpmBackend(fresh_swtpm.tcti, tmp_path / "keys", owner_auth="owner secret")
    try:
        backend.create("ec", KeyKind.EC_P256)
        backend.sign("ec", SignAlgorithm.ECDSA_SHA256, b"data")
    finally:
        backend.close()
