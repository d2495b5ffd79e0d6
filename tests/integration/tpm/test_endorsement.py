"""The EK and the RSA SRK on a fresh swtpm: created when absent, read back by tpm2-tools byte for
byte, the EK identical to the one `tpm2_createek` makes, reused when present, and an unsuitable
key at either handle refused with what to do."""

from __future__ import annotations

import base64
import hashlib

import pytest
from tpm2_pytss import ESYS_TR
from tpm2_pytss.constants import TPM2_ALG, TPMA_OBJECT
from tpm2_pytss.types import TPM2B_PUBLIC

from firmware.keys.tpm import TpmBackend
from firmware.tpm.endorsement import (
    EK_HANDLE,
    EK_POLICY,
    SRK_HANDLE,
    ek_template,
    ensure_ek,
    ensure_rsa_srk,
    marshalled_public,
)
from firmware.tpm.errors import TpmSetupError
from firmware.tpm.srk import STORAGE_HANDLE
from tests.integration.tpm.tpm_inspect import persistent_handles, tpm2_tool

pytestmark = pytest.mark.swtpm


def public_of(tpm, ensure) -> bytes:
    def op(esapi):
        handle, public = ensure(esapi)
        esapi.tr_close(handle)
        return marshalled_public(public)

    return tpm.run("reading a key", op)


def read_with_tools(swtpm, handle: int, tmp_path) -> bytes:
    out = tmp_path / f"{handle:08x}.pub"
    tpm2_tool(swtpm, "tpm2_readpublic", "-c", f"0x{handle:08x}", "-o", str(out))
    return out.read_bytes()


def test_created_when_absent_and_what_tpm2_tools_reads(connect, fresh_swtpm, tmp_path):
    tpm = connect()
    assert persistent_handles(tpm) == []
    ek = public_of(tpm, ensure_ek)
    srk = public_of(tpm, ensure_rsa_srk)
    assert persistent_handles(tpm) == [SRK_HANDLE, EK_HANDLE]
    # TPM2B_PUBLIC: size 0x013a, RSA, SHA-256, 0x000300b2, the 32-byte endorsement policy.
    assert ek[:12] == bytes.fromhex("013a0001000b000300b20020")
    assert ek[12:44] == EK_POLICY
    area = TPM2B_PUBLIC.unmarshal(srk)[0].publicArea
    assert area.type == TPM2_ALG.RSA and area.parameters.rsaDetail.keyBits == 2048
    assert area.objectAttributes & TPMA_OBJECT.NODA and not bytes(area.authPolicy)
    tpm.close()
    assert read_with_tools(fresh_swtpm, EK_HANDLE, tmp_path) == ek
    assert read_with_tools(fresh_swtpm, SRK_HANDLE, tmp_path) == srk


def test_ek_is_the_one_tpm2_createek_makes_and_is_reused(connect, fresh_swtpm, tmp_path):
    tpm2_tool(
        fresh_swtpm,
        "tpm2_createek",
        "-c",
        f"0x{EK_HANDLE:08x}",
        "-G",
        "rsa",
        "-u",
        str(tmp_path / "ek.pub"),
    )
    tools_ek = (tmp_path / "ek.pub").read_bytes()
    tpm = connect()

    def from_our_template(esapi):
        transient, public, *_ = esapi.create_primary(None, ek_template(), ESYS_TR.ENDORSEMENT)
        esapi.flush_context(transient)
        return marshalled_public(public)

    assert tpm.run("making the EK from our template", from_our_template) == tools_ek
    assert public_of(tpm, ensure_ek) == tools_ek
    assert persistent_handles(tpm) == [EK_HANDLE]


def test_present_keys_are_reused_and_registration_id_is_the_sdks(fresh_swtpm, tmp_path):
    backend = TpmBackend(fresh_swtpm.tcti, tmp_path / "keys")
    try:
        attestation = backend.attestation(0x100)
        ek, srk = attestation.endorsement_key(), attestation.storage_root_key()
        handles = persistent_handles(backend._tpm)
        assert handles == [SRK_HANDLE, STORAGE_HANDLE, EK_HANDLE]
        assert (attestation.endorsement_key(), attestation.storage_root_key()) == (ek, srk)
        assert persistent_handles(backend._tpm) == handles
        registration_id = attestation.registration_id()
    finally:
        backend.close()
    tools_ek = read_with_tools(fresh_swtpm, EK_HANDLE, tmp_path)
    digest = hashlib.sha256(tools_ek).digest()
    assert registration_id == base64.b32encode(digest).decode().rstrip("=").lower()
    assert len(registration_id) == 52 and registration_id.isalnum()


def test_an_os_provisioned_rsa_srk_is_used_as_it_is(connect, fresh_swtpm, tmp_path):
    tpm2_tool(
        fresh_swtpm,
        "tpm2_createprimary",
        "-C",
        "o",
        "-G",
        "rsa2048:aes128cfb",
        "-g",
        "sha256",
        "-c",
        str(tmp_path / "srk.ctx"),
    )
    tpm2_tool(
        fresh_swtpm,
        "tpm2_evictcontrol",
        "-C",
        "o",
        "-c",
        str(tmp_path / "srk.ctx"),
        f"0x{SRK_HANDLE:08x}",
    )
    tpm2_tool(fresh_swtpm, "tpm2_flushcontext", "-t")
    tools_srk = read_with_tools(fresh_swtpm, SRK_HANDLE, tmp_path)
    tpm = connect()
    assert public_of(tpm, ensure_rsa_srk) == tools_srk


def test_unsuitable_keys_at_the_handles_are_refused_with_the_fix(connect, fresh_swtpm, tmp_path):
    tpm2_tool(
        fresh_swtpm,
        "tpm2_createprimary",
        "-C",
        "o",
        "-G",
        "ecc256:aes128cfb",
        "-c",
        str(tmp_path / "ecc.ctx"),
    )
    for handle in (SRK_HANDLE, EK_HANDLE):
        tpm2_tool(
            fresh_swtpm,
            "tpm2_evictcontrol",
            "-C",
            "o",
            "-c",
            str(tmp_path / "ecc.ctx"),
            f"0x{handle:08x}",
        )
    tpm2_tool(fresh_swtpm, "tpm2_flushcontext", "-t")
    tpm = connect()
    with pytest.raises(TpmSetupError) as srk:
        public_of(tpm, ensure_rsa_srk)
    assert "0x81000001 is not an RSA-2048 storage key" in srk.value.message
    assert "tpm2_evictcontrol -C o -c 0x81000001" in srk.value.hint
    with pytest.raises(TpmSetupError) as ek:
        public_of(tpm, ensure_ek)
    assert "0x81010001 is not an RSA-2048 endorsement key" in ek.value.message
    assert "tpm2_evictcontrol -C o -c 0x81010001" in ek.value.hint
