"""Certificate service fixtures: a key service over files and a helper to start the cert service."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from firmware.certs.policy import CertificatePolicy
from firmware.certs.service import CertificateService
from firmware.executor import BoundedExecutor
from firmware.keys.file import FileBackend
from firmware.keys.registry import BackendRegistry
from firmware.keys.service import KeyService
from tests.integration.keys.conftest import key_store  # noqa: F401 - the parametrised backends


class Device:
    """One simulated device: key dir and cert dir under tmp, services started per 'boot'."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.executor = BoundedExecutor()

    def keys(self) -> KeyService:
        registry = BackendRegistry("file", {"file": lambda: FileBackend(self.root / "keys")})
        return KeyService(registry, self.executor)

    def policy(self, **changes) -> CertificatePolicy:
        return CertificatePolicy(
            **{"directory": self.root / "certs", "hostname": "testbox", **changes}
        )

    async def boot(self, **changes) -> tuple[KeyService, CertificateService]:
        keys = self.keys()
        await keys.start()
        certs = CertificateService(keys, self.policy(**changes), self.executor)
        await certs.start()
        return keys, certs


@pytest.fixture
def device(tmp_path: Path):
    dev = Device(tmp_path)
    yield dev
    dev.executor.shutdown()


def run(coro):
    return asyncio.run(coro)
