"""The DPS authenticationKey blob, parsed without a TPM: the five structures of a real challenge
(built by tests/peers/tpm_challenge.py), trailing bytes ignored, and every malformed input (cut,
sizes that lie, a structure that is not one, not an HMAC key, random bytes) refused with
`AuthenticationKeyMalformed` and nothing else."""

from __future__ import annotations

import struct

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given, settings
from hypothesis import strategies as st
from tpm2_pytss.constants import TPM2_ALG
from tpm2_pytss.types import TPM2B_ID_OBJECT, TPM2B_PUBLIC

from firmware.tpm.activation import AuthenticationKey, parse_authentication_key
from firmware.tpm.endorsement import ek_template, marshalled_public, rsa_srk_template
from firmware.tpm.errors import AuthenticationKeyMalformed
from tests.peers.tpm_challenge import make_challenge


def rsa_public(template: TPM2B_PUBLIC) -> bytes:
    """A template with a software modulus: MakeCredential and wrap only need an RSA public key."""
    key = rsa.generate_private_key(65537, 2048).public_key().public_numbers()
    template.publicArea.unique.rsa = key.n.to_bytes(256, "big")
    return marshalled_public(template)


EK = rsa_public(ek_template())
SRK = rsa_public(rsa_srk_template())
BLOB = make_challenge(EK, SRK, b"k" * 32)


def fields(blob: bytes) -> list[bytes]:
    out, offset = [], 0
    for _ in range(5):
        (size,) = struct.unpack_from(">H", blob, offset)
        out.append(blob[offset : offset + 2 + size])
        offset += 2 + size
    return out


def test_a_real_challenge_splits_into_its_five_structures():
    key = parse_authentication_key(BLOB)
    credential, secret, duplicate, seed, public = fields(BLOB)
    assert (key.credential_blob, key.secret, key.duplicate) == (credential, secret, duplicate)
    assert (key.encrypted_seed, key.public) == (seed, public)
    assert len(key.secret) == 2 + 256 and len(key.encrypted_seed) == 2 + 256  # RSA-2048 OAEP
    assert TPM2B_PUBLIC.unmarshal(key.public)[0].publicArea.type == TPM2_ALG.KEYEDHASH


def test_trailing_bytes_are_ignored_like_iot_edge_and_the_sdk():
    assert parse_authentication_key(BLOB + b"\x00\x00") == parse_authentication_key(BLOB)
    assert parse_authentication_key(BLOB + b"anything") == parse_authentication_key(BLOB)


def malformed(blob: bytes) -> str:
    with pytest.raises(AuthenticationKeyMalformed) as caught:
        parse_authentication_key(blob)
    assert caught.value.hint
    return caught.value.message


def test_cut_blobs_name_the_field():
    credential, secret, duplicate, seed, _ = fields(BLOB)
    assert "ends before credentialBlob" in malformed(b"")
    assert "ends before secret" in malformed(credential)
    assert "idKeyPublic says" in malformed(credential + secret + duplicate + seed + b"\x01\x00")
    assert "dupBlob is empty" in malformed(credential + secret + b"\x00\x00")


def test_a_structure_that_is_not_one_is_refused():
    credential, secret, duplicate, seed, public = fields(BLOB)
    oversized = struct.pack(">H", 300) + bytes(300)  # more than a TPM2B_ID_OBJECT holds
    assert "credentialBlob is not a TPM2B_ID_OBJECT" in malformed(
        oversized + secret + duplicate + seed + public
    )
    hollow = struct.pack(">H", 4) + b"\x00\x01\x00\x0b"  # a TPMT_PUBLIC cut after its name alg
    assert "idKeyPublic" in malformed(credential + secret + duplicate + seed + hollow)
    assert TPM2B_ID_OBJECT.unmarshal(credential)[1] == len(credential)


def test_a_key_that_is_not_an_hmac_key_is_refused():
    credential, secret, duplicate, seed, _ = fields(BLOB)
    assert "not a keyed-hash (HMAC) key" in malformed(credential + secret + duplicate + seed + SRK)


def joined(key: AuthenticationKey) -> bytes:
    return key.credential_blob + key.secret + key.duplicate + key.encrypted_seed + key.public


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=1200))
def test_random_bytes_only_ever_raise_the_documented_error(data):
    try:
        key = parse_authentication_key(data)
    except AuthenticationKeyMalformed as error:
        assert "authenticationKey is malformed" in error.message
        return
    assert data.startswith(joined(key))


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(BLOB) - 1), st.integers(1, 255))
def test_a_flipped_byte_parses_or_is_refused_with_the_documented_error(index, flip):
    damaged = bytearray(BLOB)
    damaged[index] ^= flip
    try:
        key = parse_authentication_key(bytes(damaged))
    except AuthenticationKeyMalformed:
        return
    assert bytes(damaged).startswith(joined(key))  # a faithful split of what was sent
