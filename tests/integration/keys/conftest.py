"""Backends for the conformance suite: the file store, a SoftHSM2 token and swtpm.

`key_store` is parametrised over the three backends. It builds fresh registries over the same
storage, so a test can restart the key service (and, for the TPM, power-cycle the simulator) and
check that keys and handles survive.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from firmware.keys.backend import KeyBackend
from firmware.keys.registry import BackendRegistry
from firmware.keys.service import KeyService
from tests.unit.keys.conftest import ThreadExecutor

_tokens = itertools.count()


@dataclass
class KeyStore:
    """One backend under test: how to open it, and how to power-cycle its device."""

    name: str
    open_backend: Callable[[], KeyBackend]
    power_cycle: Callable[[], None] = lambda: None
    executor: ThreadExecutor = field(default_factory=ThreadExecutor)
    services: list[KeyService] = field(default_factory=list)

    async def service(self) -> KeyService:
        """A freshly started key service over this store (a daemon start)."""
        registry = BackendRegistry(self.name, {self.name: self.open_backend})
        service = KeyService(registry, self.executor)
        await service.start()
        self.services.append(service)
        return service

    async def stop(self) -> None:
        for service in self.services:
            await service.close()
        self.services.clear()

    async def restart(self) -> KeyService:
        """Stop every service, power-cycle the device, and start a new service."""
        await self.stop()
        self.power_cycle()
        return await self.service()


def _file_store(tmp_path: Path) -> KeyStore:
    from firmware.keys.file import FileBackend

    return KeyStore("file", lambda: FileBackend(tmp_path / "keys"))


def _pkcs11_store(request: pytest.FixtureRequest) -> KeyStore:
    softhsm = request.getfixturevalue("softhsm")
    token = softhsm.new_token(f"conformance-{next(_tokens)}")

    def open_backend() -> KeyBackend:
        from firmware.keys.pkcs11 import Pkcs11Backend

        return Pkcs11Backend(softhsm.module, token_label=token.label, pin=token.user_pin)

    return KeyStore("pkcs11", open_backend)


def _tpm_store(request: pytest.FixtureRequest, tmp_path: Path) -> KeyStore:
    swtpm = request.getfixturevalue("swtpm")

    def open_backend() -> KeyBackend:
        from firmware.keys.tpm import TpmBackend

        return TpmBackend(swtpm.tcti, tmp_path / "tpm-keys")

    return KeyStore("tpm", open_backend, power_cycle=swtpm.restart)


@pytest.fixture(
    params=[
        "file",
        pytest.param("pkcs11", marks=pytest.mark.softhsm),
        pytest.param("tpm", marks=pytest.mark.swtpm),
    ]
)
def key_store(request: pytest.FixtureRequest, tmp_path: Path):
    builders = {
        "file": lambda: _file_store(tmp_path),
        "pkcs11": lambda: _pkcs11_store(request),
        "tpm": lambda: _tpm_store(request, tmp_path),
    }
    store = builders[request.param]()
    yield store
    asyncio.run(store.stop())
    store.executor.close()
