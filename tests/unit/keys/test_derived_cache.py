"""Derived keys: material cached in memory (no executor hop per use), dropped with the parent."""

from __future__ import annotations

import asyncio
import hashlib
import hmac

from firmware.keys.backend import KeyKind, SignAlgorithm
from tests.unit.keys.conftest import file_service

PARENT = bytes(range(32))


def run(coro):
    return asyncio.run(coro)


def expected(parent: bytes, label: bytes, data: bytes) -> bytes:
    child = hmac.digest(parent, label, hashlib.sha256)
    return hmac.digest(child, data, hashlib.sha256)


def test_repeated_use_of_a_derived_key_stays_off_the_executor(key_dir, executor):
    async def scenario():
        service = file_service(key_dir, executor)
        await service.start()
        parent = await service.import_key("device", KeyKind.HMAC_SHA256, PARENT)
        child = await service.derive(parent, b"module-a")
        first = await service.sign(child, SignAlgorithm.HMAC_SHA256, b"one")
        before = executor.calls
        second = await service.sign(child, SignAlgorithm.HMAC_SHA256, b"two")
        return first, second, executor.calls - before

    first, second, calls = run(scenario())
    assert first == expected(PARENT, b"module-a", b"one")
    assert second == expected(PARENT, b"module-a", b"two")
    assert calls == 0


def test_replacing_the_parent_drops_the_cached_child(key_dir, executor):
    other = bytes(reversed(range(32)))

    async def scenario():
        service = file_service(key_dir, executor)
        await service.start()
        parent = await service.import_key("device", KeyKind.HMAC_SHA256, PARENT)
        child = await service.derive(parent, b"module-a")
        await service.sign(child, SignAlgorithm.HMAC_SHA256, b"x")
        await service.import_key("device", KeyKind.HMAC_SHA256, other)
        return await service.sign(child, SignAlgorithm.HMAC_SHA256, b"x")

    assert run(scenario()) == expected(other, b"module-a", b"x")


def test_the_cache_is_bounded(key_dir, executor):
    async def scenario():
        from firmware.keys.file import FileBackend
        from firmware.keys.registry import BackendRegistry
        from firmware.keys.service import KeyService

        registry = BackendRegistry("file", {"file": lambda: FileBackend(key_dir)})
        service = KeyService(registry, executor, derived_cache_size=2)
        await service.start()
        parent = await service.import_key("device", KeyKind.HMAC_SHA256, PARENT)
        children = [await service.derive(parent, f"m{i}".encode()) for i in range(3)]
        for child in children:
            await service.sign(child, SignAlgorithm.HMAC_SHA256, b"x")
        before = executor.calls
        await service.sign(children[0], SignAlgorithm.HMAC_SHA256, b"x")
        return executor.calls - before

    assert run(scenario()) == 1
