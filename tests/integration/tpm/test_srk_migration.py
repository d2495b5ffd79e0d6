"""From the old TPM layout (edgekeeper's ECC storage key at 0x81000001) to the new one (the RSA
SRK there, the ECC key at 0x81000002), on a fresh swtpm per test.

A gateway of the old layout is made with the TPM backend, then its TPM is put back the way the
old code left it. The migration is cut after each of its steps (the record, then steps 1, 2, 3 of
`firmware.tpm.layout`) by doing only those steps by hand; opening the backend must finish it, and
every key must still sign with the same public key. Gateways whose keys were made under a storage
key the OS had put at 0x81000001 keep it as their keys' parent.
"""

from __future__ import annotations

import hashlib
import hmac

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from tpm2_pytss import ESYS_TR
from tpm2_pytss.constants import TPM2_ALG

from firmware.keys.backend import KeyKind, SignAlgorithm
from firmware.keys.tpm import TpmBackend
from firmware.tpm import layout
from firmware.tpm.endorsement import SRK_HANDLE, is_dps_srk
from firmware.tpm.errors import TpmSetupError
from firmware.tpm.handle_record import HandleRecord
from firmware.tpm.primary import evict_persistent, read_persistent
from firmware.tpm.srk import STORAGE_HANDLE, ensure_storage_key, storage_key_template
from tests.integration.tpm.tpm_inspect import persistent_handles, tpm2_tool

pytestmark = pytest.mark.swtpm

DATA = b"signed before and after the migration"
MAC_KEY = b"m" * 32


def make_keys(backend: TpmBackend) -> bytes:
    backend.create("ec", KeyKind.EC_P256)
    backend.import_key("mac", KeyKind.HMAC_SHA256, MAC_KEY)
    return backend.public_key("ec")


def check_keys(backend: TpmBackend, ec_public: bytes) -> None:
    assert backend.public_key("ec") == ec_public
    key = serialization.load_der_public_key(ec_public)
    key.verify(
        backend.sign("ec", SignAlgorithm.ECDSA_SHA256, DATA), DATA, ec.ECDSA(hashes.SHA256())
    )
    expected = hmac.new(MAC_KEY, DATA, hashlib.sha256).digest()
    assert backend.sign("mac", SignAlgorithm.HMAC_SHA256, DATA) == expected


def public_at(tpm, handle: int):
    def op(esapi):
        found = read_persistent(esapi, handle)
        if found is None:
            return None
        esapi.tr_close(found[0])
        return found[1]

    return tpm.run(f"reading 0x{handle:08x}", op)


def old_layout(connect, keys_dir) -> tuple[bytes, bytes]:
    """A gateway as the old code left it: ECC storage key at 0x81000001, keys made under it, no
    parent record. Returns the EC key's public key and the ECC storage key's name."""
    backend = TpmBackend("", keys_dir, connection=connect())
    ec_public = make_keys(backend)
    backend.close()
    tpm = connect()

    def back_to_old(esapi):
        for handle in (SRK_HANDLE, STORAGE_HANDLE):
            evict_persistent(esapi, read_persistent(esapi, handle)[0])
        transient, public, *_ = esapi.create_primary(None, storage_key_template(), ESYS_TR.OWNER)
        esapi.tr_close(esapi.evict_control(ESYS_TR.OWNER, transient, SRK_HANDLE))
        esapi.flush_context(transient)
        return bytes(public.get_name())

    name = tpm.run("putting the TPM back to the old layout", back_to_old)
    assert persistent_handles(tpm) == [SRK_HANDLE]
    tpm.close()
    (keys_dir / layout.PARENT_RECORD).unlink()
    return ec_public, name


def run_first_steps(tpm, record: HandleRecord, steps: int) -> None:
    """The migration cut short: the record, then steps 1..3, as many as `steps` says."""
    if steps >= 1:
        record.write(STORAGE_HANDLE)

    def op(esapi):
        if steps >= 2:
            key, _ = ensure_storage_key(esapi, STORAGE_HANDLE)
            esapi.tr_close(key)
        if steps >= 3:
            evict_persistent(esapi, read_persistent(esapi, SRK_HANDLE)[0])

    tpm.run("the first migration steps", op)


@pytest.mark.parametrize("steps", [0, 1, 2, 3], ids=["none", "record", "step1", "step2"])
def test_cut_anywhere_then_opened_again_every_key_still_signs(connect, tmp_path, steps):
    keys_dir = tmp_path / "keys"
    ec_public, ecc_name = old_layout(connect, keys_dir)
    record = HandleRecord(keys_dir / layout.PARENT_RECORD, "parent record")
    cut = connect()
    run_first_steps(cut, record, steps)
    cut.close()
    backend = TpmBackend("", keys_dir, connection=connect())
    try:
        check_keys(backend, ec_public)
        backend.create("new", KeyKind.EC_P256)
        assert backend._store.read("new").parent == ecc_name  # new keys: the same parent
    finally:
        backend.close()
    tpm = connect()
    assert persistent_handles(tpm) == [SRK_HANDLE, STORAGE_HANDLE]
    assert bytes(public_at(tpm, STORAGE_HANDLE).get_name()) == ecc_name
    srk = public_at(tpm, SRK_HANDLE)
    assert srk.publicArea.type == TPM2_ALG.RSA and is_dps_srk(srk)
    assert record.read() == STORAGE_HANDLE
    tpm.close()
    again = TpmBackend("", keys_dir, connection=connect())  # idempotent: nothing changes
    try:
        check_keys(again, ec_public)
        assert persistent_handles(again._tpm) == [SRK_HANDLE, STORAGE_HANDLE]
        assert again._tpm.run("naming", again._tpm.srk_name) == ecc_name
    finally:
        again.close()


def foreign_gateway(connect, swtpm, tmp_path, algorithm: str) -> tuple[bytes, bytes]:
    """Keys made (by the old code) under a storage key tpm2-tools put at 0x81000001; no record.
    Returns the EC key's public key and the foreign key's public area as tpm2-tools reads it."""
    context = tmp_path / "foreign.ctx"
    tpm2_tool(swtpm, "tpm2_createprimary", "-C", "o", "-G", algorithm, "-c", str(context))
    tpm2_tool(swtpm, "tpm2_evictcontrol", "-C", "o", "-c", str(context), f"0x{SRK_HANDLE:08x}")
    tpm2_tool(swtpm, "tpm2_flushcontext", "-t")
    keys_dir = tmp_path / "keys"
    keys_dir.mkdir(mode=0o700)
    record = HandleRecord(keys_dir / layout.PARENT_RECORD, "parent record")
    record.write(SRK_HANDLE)  # what the old code did: the object at 0x81000001 is the parent
    backend = TpmBackend("", keys_dir, connection=connect())
    ec_public = make_keys(backend)
    backend.close()
    record.path.unlink()
    out = tmp_path / "foreign.pub"
    tpm2_tool(swtpm, "tpm2_readpublic", "-c", f"0x{SRK_HANDLE:08x}", "-o", str(out))
    return ec_public, out.read_bytes()


def test_keys_under_an_os_rsa_srk_keep_it_and_dps_uses_it(connect, fresh_swtpm, tmp_path):
    ec_public, foreign = foreign_gateway(connect, fresh_swtpm, tmp_path, "rsa2048:aes128cfb")
    backend = TpmBackend("", tmp_path / "keys", connection=connect())
    try:
        check_keys(backend, ec_public)
        assert persistent_handles(backend._tpm) == [SRK_HANDLE]  # nothing made, nothing evicted
        record = HandleRecord(tmp_path / "keys" / layout.PARENT_RECORD, "parent record")
        assert record.read() == SRK_HANDLE
        assert backend.attestation(0x100).storage_root_key() == foreign
    finally:
        backend.close()


def test_keys_under_an_os_ecc_key_keep_it_and_dps_says_what_to_do(connect, fresh_swtpm, tmp_path):
    ec_public, _ = foreign_gateway(connect, fresh_swtpm, tmp_path, "ecc256:aes128cfb")
    backend = TpmBackend("", tmp_path / "keys", connection=connect())
    try:
        check_keys(backend, ec_public)
        with pytest.raises(TpmSetupError) as caught:
            backend.attestation(0x100).storage_root_key()
        assert "0x81000001 is not an RSA-2048 storage key" in caught.value.message
        assert "symmetric-key or X.509 attestation" in caught.value.hint
        check_keys(backend, ec_public)
    finally:
        backend.close()


def test_a_fresh_tpm_gets_the_new_layout_and_a_record(connect, tmp_path):
    backend = TpmBackend("", tmp_path / "keys", connection=connect())
    try:
        assert persistent_handles(backend._tpm) == [SRK_HANDLE, STORAGE_HANDLE]
    finally:
        backend.close()
    record = HandleRecord(tmp_path / "keys" / layout.PARENT_RECORD, "parent record")
    assert record.read() == STORAGE_HANDLE
