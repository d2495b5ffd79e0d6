"""A module's keys: one per purpose, the primary (SAS) derivation pinned by a known answer, and
`encrypt` safe when a module reuses its IV."""

from __future__ import annotations

import asyncio
import hmac
import os
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from firmware.executor import BoundedExecutor
from firmware.identity import sealed
from firmware.identity.errors import InvalidSealedData
from firmware.identity.modules import (
    MASTER_KEY,
    STATE_NAME,
    ModuleIdentities,
    ModuleKey,
    derivation_label,
)
from firmware.keys.backend import KeyKind
from firmware.keys.errors import KeyOperationFailed
from firmware.keys.file import FileBackend
from firmware.keys.registry import BackendRegistry
from firmware.keys.service import KeyService
from firmware.store.state import StateStore

MASTER = bytes(range(32))
MODULE = "tempSensor"
GENID = "63841234567890123456"
SAS_INPUT = b"hub.example.net%2Fdevices%2Fgw%2Fmodules%2FtempSensor\n1900000000"
# HMAC-SHA256(HMAC-SHA256(MASTER, "tempSensor:GENID:primary"), SAS_INPUT), IoT Edge's derivation
# data: the hub holds this key for the module (set when the identity is created), so it never
# changes. (Before module identities reached the hub, a private label was used; no hub held it.)
PRIMARY_DIGEST = "f41d50083afb723680ddf86a56f2e3abdab702d17e55300c4ce417952ea1fba7"


def child_secret(key: ModuleKey, module: str = MODULE, genid: str = GENID) -> bytes:
    return hmac.digest(MASTER, derivation_label(module, genid, key), "sha256")


async def boot(root: Path, executor: BoundedExecutor) -> tuple[KeyService, ModuleIdentities]:
    """A device whose master identity key is `MASTER` and which knows `MODULE` at `GENID`."""
    registry = BackendRegistry("file", {"file": lambda: FileBackend(root / "keys")})
    keys = KeyService(registry, executor)
    await keys.start()
    await keys.import_key(MASTER_KEY, KeyKind.HMAC_SHA256, MASTER)
    store = StateStore(root / "state")
    doc = {
        "identities": [
            {"moduleId": MODULE, "generationId": GENID},
            {"moduleId": "other", "generationId": GENID},
        ]
    }
    await executor.run(store.put, STATE_NAME, doc)
    identities = ModuleIdentities(keys, store, executor.run)
    await identities.start()
    return keys, identities


@pytest.fixture
def device(tmp_path: Path):
    executor = BoundedExecutor()

    async def booted() -> tuple[KeyService, ModuleIdentities]:
        return await boot(tmp_path, executor)

    yield booted
    executor.shutdown()


def test_primary_signature_is_iot_edges_derivation(device) -> None:
    async def scenario() -> bytes:
        keys, identities = await device()
        try:
            return await identities.sign(MODULE, GENID, ModuleKey.PRIMARY, SAS_INPUT)
        finally:
            await keys.close()

    assert asyncio.run(scenario()).hex() == PRIMARY_DIGEST


def test_each_purpose_has_its_own_key(device) -> None:
    async def scenario() -> tuple[bytes, bytes]:
        keys, identities = await device()
        try:
            primary = await identities.sign(MODULE, GENID, ModuleKey.PRIMARY, SAS_INPUT)
            secondary = await identities.sign(MODULE, GENID, ModuleKey.SECONDARY, SAS_INPUT)
            return primary, secondary
        finally:
            await keys.close()

    primary, secondary = asyncio.run(scenario())
    assert primary != secondary
    assert secondary == hmac.digest(child_secret(ModuleKey.SECONDARY), SAS_INPUT, "sha256")
    labels = {derivation_label(MODULE, GENID, key) for key in ModuleKey}
    assert len(labels) == len(ModuleKey)


def test_encrypt_picks_its_own_nonce_and_binds_the_iv(device) -> None:
    iv = os.urandom(12)

    async def scenario() -> tuple[bytes, bytes]:
        keys, identities = await device()
        try:
            first = await identities.encrypt(MODULE, GENID, iv, b"twin secret")
            second = await identities.encrypt(MODULE, GENID, iv, b"twin secret")
            assert await identities.decrypt(MODULE, GENID, iv, first) == b"twin secret"
            assert await identities.decrypt(MODULE, GENID, iv, second) == b"twin secret"
            with pytest.raises(KeyOperationFailed):
                await identities.decrypt(MODULE, GENID, os.urandom(12), first)
            with pytest.raises(KeyOperationFailed):
                await identities.decrypt("other", GENID, iv, first)
            with pytest.raises(InvalidSealedData, match="ciphertext"):
                await identities.decrypt(MODULE, GENID, iv, first[: sealed.OVERHEAD - 1])
            return first, second
        finally:
            await keys.close()

    first, second = asyncio.run(scenario())
    assert first != second
    assert first[: sealed.NONCE_BYTES] != second[: sealed.NONCE_BYTES]
    assert len(first) == len(b"twin secret") + sealed.OVERHEAD
    # The blob is nonce ‖ ciphertext ‖ tag under the encryption key, the IV in the associated
    # data; the primary (signing) key does not open it.
    nonce, body = first[: sealed.NONCE_BYTES], first[sealed.NONCE_BYTES :]
    aad = sealed.associated_data(iv)
    assert AESGCM(child_secret(ModuleKey.ENCRYPTION)).decrypt(nonce, body, aad) == b"twin secret"
    with pytest.raises(InvalidTag):
        AESGCM(child_secret(ModuleKey.PRIMARY)).decrypt(nonce, body, aad)
