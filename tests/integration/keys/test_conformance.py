"""The key backend conformance suite: every operation through `KeyService` on every backend.

Signatures are verified independently with `cryptography` from the exported public key; HMAC and
GCM results are compared with `cryptography`/`hmac` computed from imported material. The three
backends as the sim board has them (files, a SoftHSM2 token, swtpm) offer every operation used here,
so every one must succeed: a `NotSupported` is a failure too. An operation that makes no sense for
a key's kind is refused with `KeyKindMismatch`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from firmware.keys.backend import KeyKind, SignAlgorithm
from firmware.keys.errors import (
    InvalidKeyHandle,
    KeyKindMismatch,
    KeyNotFound,
    KeyOperationFailed,
)

DATA = b"edgekeeper conformance \x00\x01\x02" * 8


def run(coro):
    return asyncio.run(coro)


def public_key(der: bytes):
    return serialization.load_der_public_key(der)


def test_ec_p256_sign_verified_by_cryptography(key_store):
    async def scenario():
        service = await key_store.service()
        handle = await service.create_key_pair("ec", KeyKind.EC_P256)
        key = public_key(await service.public_key(handle))
        assert isinstance(key, ec.EllipticCurvePublicKey)
        assert isinstance(key.curve, ec.SECP256R1)
        signature = await service.sign(handle, SignAlgorithm.ECDSA_SHA256, DATA)
        key.verify(signature, DATA, ec.ECDSA(hashes.SHA256()))
        with pytest.raises(InvalidSignature):
            key.verify(signature, DATA + b"x", ec.ECDSA(hashes.SHA256()))
        assert await service.verify(handle, SignAlgorithm.ECDSA_SHA256, DATA, signature)
        assert not await service.verify(handle, SignAlgorithm.ECDSA_SHA256, DATA + b"x", signature)

    run(scenario())


def test_ec_p256_signs_a_digest_as_tls_asks_verified_by_cryptography(key_store):
    async def scenario():
        service = await key_store.service()
        handle = await service.create_key_pair("ec-digest", KeyKind.EC_P256)
        key = public_key(await service.public_key(handle))
        digest = hashlib.sha256(DATA).digest()
        signature = await service.sign(handle, SignAlgorithm.ECDSA_SHA256_DIGEST, digest)
        prehashed = ec.ECDSA(utils.Prehashed(hashes.SHA256()))
        key.verify(signature, digest, prehashed)
        key.verify(signature, DATA, ec.ECDSA(hashes.SHA256()))  # the same as signing DATA
        with pytest.raises(InvalidSignature):
            key.verify(signature, hashlib.sha256(DATA + b"x").digest(), prehashed)
        assert await service.verify(handle, SignAlgorithm.ECDSA_SHA256_DIGEST, digest, signature)
        with pytest.raises(KeyOperationFailed, match="32-byte SHA-256 digest, not 33 bytes"):
            await service.sign(handle, SignAlgorithm.ECDSA_SHA256_DIGEST, digest + b"x")
        rsa_handle = await service.create_key_pair("rsa-digest", KeyKind.RSA_2048)
        with pytest.raises(KeyKindMismatch):
            await service.sign(rsa_handle, SignAlgorithm.ECDSA_SHA256_DIGEST, digest)

    run(scenario())


def test_rsa_2048_pkcs1_and_pss_verified_by_cryptography(key_store):
    async def scenario():
        service = await key_store.service()
        handle = await service.create_key_pair("rsa", KeyKind.RSA_2048)
        key = public_key(await service.public_key(handle))
        assert isinstance(key, rsa.RSAPublicKey)
        assert key.key_size == 2048
        signature = await service.sign(handle, SignAlgorithm.RSA_PKCS1_SHA256, DATA)
        key.verify(signature, DATA, padding.PKCS1v15(), hashes.SHA256())
        assert await service.verify(handle, SignAlgorithm.RSA_PKCS1_SHA256, DATA, signature)
        pss = await service.sign(handle, SignAlgorithm.RSA_PSS_SHA256, DATA)
        pss_padding = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO)
        key.verify(pss, DATA, pss_padding, hashes.SHA256())
        with pytest.raises(InvalidSignature):
            key.verify(pss, DATA + b"x", pss_padding, hashes.SHA256())
        assert await service.verify(handle, SignAlgorithm.RSA_PSS_SHA256, DATA, pss)

    run(scenario())


def test_create_is_create_if_absent_and_kind_checked(key_store):
    async def scenario():
        service = await key_store.service()
        first = await service.create_key_pair("pair", KeyKind.EC_P256)
        again = await service.create_key_pair("pair", KeyKind.EC_P256)
        assert await service.public_key(first) == await service.public_key(again)
        with pytest.raises(KeyKindMismatch):
            await service.create_key_pair("pair", KeyKind.RSA_2048)
        loaded = await service.load("pair")
        assert await service.public_key(loaded) == await service.public_key(first)
        with pytest.raises(KeyNotFound):
            await service.load("absent")

    run(scenario())


def test_hmac_matches_imported_secret(key_store):
    async def scenario():
        service = await key_store.service()
        secret = os.urandom(32)
        handle = await service.import_key("mac", KeyKind.HMAC_SHA256, secret)
        generated = await service.create_key("mac-gen", KeyKind.HMAC_SHA256)
        tag = await service.sign(generated, SignAlgorithm.HMAC_SHA256, DATA)
        assert len(tag) == 32
        assert tag == await service.sign(generated, SignAlgorithm.HMAC_SHA256, DATA)
        assert await service.verify(generated, SignAlgorithm.HMAC_SHA256, DATA, tag)
        assert not await service.verify(generated, SignAlgorithm.HMAC_SHA256, DATA, bytes(32))
        mac = await service.sign(handle, SignAlgorithm.HMAC_SHA256, DATA)
        assert mac == hmac.digest(secret, DATA, "sha256")

    run(scenario())


def test_aes_gcm_round_trip_and_tamper_detection(key_store):
    async def scenario():
        service = await key_store.service()
        handle = await service.create_key("aes", KeyKind.AES_256)
        iv, aad = os.urandom(12), b"header"
        sealed = await service.encrypt(handle, iv, aad, DATA)
        assert len(sealed) == len(DATA) + 16
        assert await service.decrypt(handle, iv, aad, sealed) == DATA
        flipped = bytes([sealed[0] ^ 1]) + sealed[1:]
        bad_tag = sealed[:-1] + bytes([sealed[-1] ^ 1])
        for ciphertext, used_iv, used_aad in (
            (flipped, iv, aad),
            (bad_tag, iv, aad),
            (sealed, iv, b"other"),
            (sealed, os.urandom(12), aad),
        ):
            with pytest.raises(KeyOperationFailed):
                await service.decrypt(handle, used_iv, used_aad, ciphertext)

    run(scenario())


def test_aes_gcm_matches_cryptography_for_imported_key(key_store):
    async def scenario():
        service = await key_store.service()
        secret = os.urandom(32)
        handle = await service.import_key("aes-imp", KeyKind.AES_256, secret)
        iv = os.urandom(12)
        sealed = await service.encrypt(handle, iv, b"aad", DATA)
        assert sealed == AESGCM(secret).encrypt(iv, DATA, b"aad")
        assert await service.decrypt(handle, iv, b"aad", sealed) == DATA

    run(scenario())


def test_import_key_pair_gives_its_public_key(key_store):
    async def scenario():
        service = await key_store.service()
        private = ec.generate_private_key(ec.SECP256R1())
        der = private.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        handle = await service.import_key("imported-ec", KeyKind.EC_P256, der)
        expected = private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        assert await service.public_key(handle) == expected
        signature = await service.sign(handle, SignAlgorithm.ECDSA_SHA256, DATA)
        private.public_key().verify(signature, DATA, ec.ECDSA(hashes.SHA256()))

    run(scenario())


def test_wrong_algorithm_for_key_is_refused(key_store):
    async def scenario():
        service = await key_store.service()
        ec_handle = await service.create_key_pair("ec", KeyKind.EC_P256)
        mac_handle = await service.create_key("mac", KeyKind.HMAC_SHA256)
        with pytest.raises(KeyKindMismatch):
            await service.sign(ec_handle, SignAlgorithm.HMAC_SHA256, DATA)
        with pytest.raises(KeyKindMismatch):
            await service.sign(mac_handle, SignAlgorithm.ECDSA_SHA256, DATA)
        with pytest.raises(KeyKindMismatch):
            await service.encrypt(mac_handle, os.urandom(12), b"", DATA)
        with pytest.raises(KeyKindMismatch):
            await service.public_key(mac_handle)

    run(scenario())


def test_derived_keys_sign_and_encrypt_reproducibly_across_restart(key_store):
    async def scenario():
        service = await key_store.service()
        secret = os.urandom(32)
        parent = await service.import_key("device", KeyKind.HMAC_SHA256, secret)
        child = await service.derive(parent, b"module-a:gen-1")
        other = await service.derive(parent, b"module-b:gen-1")
        tag = await service.sign(child, SignAlgorithm.HMAC_SHA256, DATA)
        assert tag != await service.sign(other, SignAlgorithm.HMAC_SHA256, DATA)
        child_secret = hmac.digest(secret, b"module-a:gen-1", "sha256")
        assert tag == hmac.digest(child_secret, DATA, "sha256")
        iv = os.urandom(12)
        sealed = await service.encrypt(child, iv, b"aad", DATA)
        assert await service.decrypt(child, iv, b"aad", sealed) == DATA
        with pytest.raises(KeyOperationFailed):
            await service.decrypt(other, iv, b"aad", sealed)
        with pytest.raises(KeyKindMismatch):
            await service.sign(child, SignAlgorithm.ECDSA_SHA256, DATA)
        return child, tag, iv, sealed

    child, tag, iv, sealed = run(scenario())

    async def after_restart():
        service = await key_store.restart()
        parent = await service.load("device")
        again = await service.derive(parent, b"module-a:gen-1")
        assert await service.sign(again, SignAlgorithm.HMAC_SHA256, DATA) == tag
        assert await service.sign(child, SignAlgorithm.HMAC_SHA256, DATA) == tag
        assert await service.decrypt(again, iv, b"aad", sealed) == DATA

    run(after_restart())


def test_derive_needs_an_hmac_parent(key_store):
    async def scenario():
        service = await key_store.service()
        pair = await service.create_key_pair("ec", KeyKind.EC_P256)
        with pytest.raises(KeyKindMismatch):
            await service.derive(pair, b"label")

    run(scenario())


def test_handles_survive_restart_and_forgeries_are_refused(key_store):
    async def scenario():
        service = await key_store.service()
        handle = await service.create_key_pair("ec", KeyKind.EC_P256)
        forged = handle.value[:-2] + ("AA" if handle.value[-2:] != "AA" else "BB")
        with pytest.raises(InvalidKeyHandle):
            await service.public_key(forged)
        return handle, await service.public_key(handle)

    handle, der = run(scenario())

    async def after_restart():
        service = await key_store.restart()
        assert await service.public_key(handle) == der

    run(after_restart())


def test_list_and_delete(key_store):
    async def scenario():
        service = await key_store.service()
        pair = await service.create_key_pair("ec", KeyKind.EC_P256)
        await service.create_key("aes", KeyKind.AES_256)
        listing = await service.list()
        assert listing.unavailable == ()
        found = {(info.key_id, info.kind, info.backend) for info in listing.keys}
        assert ("ec", KeyKind.EC_P256, key_store.name) in found
        assert ("aes", KeyKind.AES_256, key_store.name) in found
        await service.delete(pair)
        with pytest.raises(KeyNotFound):
            await service.public_key(pair)
        with pytest.raises(KeyNotFound):
            await service.load("ec")
        assert "ec" not in {info.key_id for info in (await service.list()).keys}

    run(scenario())
