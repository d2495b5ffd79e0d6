"""Key handles: forged, truncated and swapped handles are refused; handles survive a restart."""

from __future__ import annotations

import asyncio

import pytest

from firmware.keys.backend import KeyKind, SignAlgorithm
from firmware.keys.errors import InvalidKeyHandle, ReservedKey
from firmware.keys.handles import HANDLE_VALIDATION_KEY, HandlePayload, KeyHandle, assemble, split
from tests.unit.keys.conftest import file_service


def run(coro):
    return asyncio.run(coro)


def test_handle_roundtrip_and_restart(key_dir, executor):
    async def first():
        service = file_service(key_dir, executor)
        await service.start()
        return await service.create_key("device", KeyKind.HMAC_SHA256)

    handle = run(first())

    async def after_restart():
        service = file_service(key_dir, executor)
        await service.start()
        return await service.sign(handle.value, SignAlgorithm.HMAC_SHA256, b"data")

    assert len(run(after_restart())) == 32


def test_every_single_character_change_is_refused(key_dir, executor):
    async def scenario():
        service = file_service(key_dir, executor)
        await service.start()
        handle = (await service.create_key("k", KeyKind.HMAC_SHA256)).value
        alphabet = "AB_-"
        refused = 0
        for position in range(len(handle)):
            if handle[position] == ".":
                continue
            replacement = next(c for c in alphabet if c != handle[position])
            forged = handle[:position] + replacement + handle[position + 1 :]
            with pytest.raises(InvalidKeyHandle):
                await service.sign(forged, SignAlgorithm.HMAC_SHA256, b"x")
            refused += 1
        return refused, len(handle)

    refused, length = run(scenario())
    assert refused == length - 1


def test_truncated_handles_are_refused(key_dir, executor):
    async def scenario():
        service = file_service(key_dir, executor)
        await service.start()
        handle = (await service.create_key("k", KeyKind.HMAC_SHA256)).value
        for cut in (1, 5, len(handle) // 2, len(handle) - 1):
            with pytest.raises(InvalidKeyHandle):
                await service.sign(handle[:cut], SignAlgorithm.HMAC_SHA256, b"x")
        for junk in ("", ".", "abc", "a.b.c", "x" * 5000):
            with pytest.raises(InvalidKeyHandle):
                await service.sign(junk, SignAlgorithm.HMAC_SHA256, b"x")

    run(scenario())


def test_swapped_payload_and_mac_are_refused(key_dir, executor):
    async def scenario():
        service = file_service(key_dir, executor)
        await service.start()
        one = (await service.create_key("one", KeyKind.HMAC_SHA256)).value
        two = (await service.create_key("two", KeyKind.HMAC_SHA256)).value
        payload_one, _ = one.split(".")
        _, mac_two = two.split(".")
        with pytest.raises(InvalidKeyHandle, match="another key"):
            await service.sign(f"{payload_one}.{mac_two}", SignAlgorithm.HMAC_SHA256, b"x")

    run(scenario())


def test_handle_edited_to_name_another_key_is_refused(key_dir, executor):
    async def scenario():
        service = file_service(key_dir, executor)
        await service.start()
        handle = await service.create_key("mine", KeyKind.HMAC_SHA256)
        await service.create_key("theirs", KeyKind.HMAC_SHA256)
        payload_bytes, mac = split(handle)
        payload = HandlePayload.decode(payload_bytes)
        edited = HandlePayload("theirs", payload.backend, payload.labels, payload.nonce)
        with pytest.raises(InvalidKeyHandle):
            await service.sign(assemble(edited.encode(), mac), SignAlgorithm.HMAC_SHA256, b"x")
        derived = HandlePayload("mine", payload.backend, (b"label",), payload.nonce)
        with pytest.raises(InvalidKeyHandle):
            await service.sign(assemble(derived.encode(), mac), SignAlgorithm.HMAC_SHA256, b"x")

    run(scenario())


def test_handles_from_another_device_are_refused(tmp_path, executor):
    async def scenario():
        a = file_service(tmp_path / "a", executor)
        b = file_service(tmp_path / "b", executor)
        await a.start()
        await b.start()
        handle = await a.create_key("k", KeyKind.HMAC_SHA256)
        await b.create_key("k", KeyKind.HMAC_SHA256)
        with pytest.raises(InvalidKeyHandle):
            await b.sign(handle, SignAlgorithm.HMAC_SHA256, b"x")

    run(scenario())


def test_validation_key_is_reserved(key_dir, executor):
    async def scenario():
        service = file_service(key_dir, executor)
        await service.start()
        for attempt in (
            service.load(HANDLE_VALIDATION_KEY),
            service.create_key(HANDLE_VALIDATION_KEY, KeyKind.HMAC_SHA256),
            service.import_key(HANDLE_VALIDATION_KEY, KeyKind.HMAC_SHA256, b"k" * 32),
        ):
            with pytest.raises(ReservedKey):
                await attempt

    run(scenario())


def test_verified_handles_are_cached(key_dir, executor):
    async def scenario():
        service = file_service(key_dir, executor)
        await service.start()
        handle = (await service.create_key("k", KeyKind.HMAC_SHA256)).value
        fresh = KeyHandle(handle)
        before = executor.calls
        for _ in range(10):
            await service.sign(fresh, SignAlgorithm.HMAC_SHA256, b"x")
        return executor.calls - before

    assert run(scenario()) == 10


def test_cache_is_bounded(key_dir, executor):
    async def scenario():
        from firmware.keys.file import FileBackend
        from firmware.keys.registry import BackendRegistry
        from firmware.keys.service import KeyService

        registry = BackendRegistry("file", {"file": lambda: FileBackend(key_dir)})
        service = KeyService(registry, executor, handle_cache_size=2)
        await service.start()
        await service.create_key("k", KeyKind.HMAC_SHA256)
        handles = [await service.load("k") for _ in range(3)]
        before = executor.calls
        await service.sign(handles[0], SignAlgorithm.HMAC_SHA256, b"x")
        return executor.calls - before

    assert run(scenario()) == 2
