"""Backends for the conformance suite: the file store, a SoftHSM2 token and swtpm.

`key_store` is parametrised over the three backends, the TPM also over each of edgekeeper's own
transports to its simulator (TIS over I²C and SPI, frames over a serial line), and over a real TPM
named by EDGEKEEPER_TEST_TPM_URL when one is given. It builds fresh registries over the same
storage, so a test can restart the key service (and, for the TPM, power-cycle the simulator) and
check that keys and handles survive.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from firmware.keys.backend import KeyBackend
from firmware.keys.registry import BackendRegistry
from firmware.keys.service import KeyService
from tests.peers.i2c_tpm import I2cTpm
from tests.peers.serial_tpm import SerialTpm
from tests.peers.spi_tpm import SpiTpm
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


def _tpm_url_store(url: str, tmp_path: Path, power_cycle: Callable[[], None]) -> KeyStore:
    def open_backend() -> KeyBackend:
        from firmware.keys.tpm import TpmBackend

        return TpmBackend(url, tmp_path / "tpm-keys")

    return KeyStore("tpm", open_backend, power_cycle=power_cycle)


def _bus_tpm_store(
    request: pytest.FixtureRequest, tmp_path: Path, simulator: type[I2cTpm] | type[SpiTpm]
) -> Iterator[KeyStore]:
    """A TPM at register level on a simulated I²C or SPI bus, executing on the session's swtpm."""
    swtpm = request.getfixturevalue("swtpm")
    device = simulator(tmp_path / "bus.sock", swtpm.host, swtpm.port, swtpm.ctrl_port)
    device.start()
    scheme = "tis-i2c" if simulator is I2cTpm else "tis-spi"
    try:
        yield _tpm_url_store(f"{scheme}://{device.path}", tmp_path, swtpm.restart)
    finally:
        device.stop()
    assert not device.errors, f"the bus simulator failed: {device.errors}"


def _serial_tpm_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[KeyStore]:
    """A TPM behind a serial line (a pseudo-terminal) relaying frames to the session's swtpm."""
    swtpm = request.getfixturevalue("swtpm")
    line = SerialTpm(swtpm)
    line.start()
    try:
        yield _tpm_url_store(line.url, tmp_path, swtpm.restart)
    finally:
        line.stop()


def _real_tpm_store(tmp_path: Path) -> Iterator[KeyStore]:
    """The TPM named by EDGEKEEPER_TEST_TPM_URL (a board's real device, docs/transports.md)."""
    url = os.environ.get("EDGEKEEPER_TEST_TPM_URL")
    if not url:
        pytest.skip("EDGEKEEPER_TEST_TPM_URL names no TPM to test")
    yield _tpm_url_store(url, tmp_path, lambda: None)


@pytest.fixture(
    params=[
        "file",
        pytest.param("pkcs11", marks=pytest.mark.softhsm),
        pytest.param("tpm", marks=pytest.mark.swtpm),
        pytest.param("tpm-i2c", marks=pytest.mark.swtpm),
        pytest.param("tpm-spi", marks=pytest.mark.swtpm),
        pytest.param("tpm-serial", marks=pytest.mark.swtpm),
        "tpm-url",
    ]
)
def key_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[KeyStore]:
    builders: dict[str, Callable[[], Iterator[KeyStore]]] = {
        "file": lambda: iter([_file_store(tmp_path)]),
        "pkcs11": lambda: iter([_pkcs11_store(request)]),
        "tpm": lambda: iter([_tpm_store(request, tmp_path)]),
        "tpm-i2c": lambda: _bus_tpm_store(request, tmp_path, I2cTpm),
        "tpm-spi": lambda: _bus_tpm_store(request, tmp_path, SpiTpm),
        "tpm-serial": lambda: _serial_tpm_store(request, tmp_path),
        "tpm-url": lambda: _real_tpm_store(tmp_path),
    }
    stores = builders[request.param]()
    store = next(stores)
    yield store
    asyncio.run(store.stop())
    store.executor.close()
    next(stores, None)
