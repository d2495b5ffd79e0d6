"""Fixtures for the bus-level TPM simulators (tests/peers/i2c_tpm.py, spi_tpm.py): each started on
a bus socket in a short private directory, backed by the session's swtpm (or the test's own when it
resets the TPM), and stopped at the end. The tests speak to them with tests/peers/raw_bus.py."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.peers.i2c_tpm import I2cTpm
from tests.peers.raw_bus import RawBus
from tests.peers.sim import Swtpm
from tests.peers.spi_tpm import SpiTpm


@pytest.fixture
def bus_dir() -> Iterator[Path]:
    """A short directory for bus sockets (a unix socket path must stay under 108 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="bus-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _i2c(swtpm: Swtpm, bus_dir: Path, **options: int) -> Iterator[I2cTpm]:
    tpm = I2cTpm(bus_dir / "i2c.sock", swtpm.host, swtpm.port, swtpm.ctrl_port, **options)
    tpm.start()
    try:
        yield tpm
    finally:
        tpm.stop()
    assert not tpm.errors, f"the I²C simulator failed: {tpm.errors!r}"


def _spi(swtpm: Swtpm, bus_dir: Path) -> Iterator[SpiTpm]:
    tpm = SpiTpm(bus_dir / "spi.sock", swtpm.host, swtpm.port, swtpm.ctrl_port)
    tpm.start()
    try:
        yield tpm
    finally:
        tpm.stop()
    assert not tpm.errors, f"the SPI simulator failed: {tpm.errors!r}"


@pytest.fixture
def i2c_tpm(swtpm: Swtpm, bus_dir: Path) -> Iterator[I2cTpm]:
    yield from _i2c(swtpm, bus_dir)


@pytest.fixture
def i2c_tpm_fresh(fresh_swtpm: Swtpm, bus_dir: Path) -> Iterator[I2cTpm]:
    """On the test's own swtpm: for tests that reset the TPM."""
    yield from _i2c(fresh_swtpm, bus_dir)


@pytest.fixture
def spi_tpm(swtpm: Swtpm, bus_dir: Path) -> Iterator[SpiTpm]:
    yield from _spi(swtpm, bus_dir)


@pytest.fixture
def spi_tpm_fresh(fresh_swtpm: Swtpm, bus_dir: Path) -> Iterator[SpiTpm]:
    """On the test's own swtpm: for tests that reset the TPM."""
    yield from _spi(fresh_swtpm, bus_dir)


@pytest.fixture
def i2c_bus(i2c_tpm: I2cTpm) -> Iterator[RawBus]:
    bus = RawBus(i2c_tpm.path)
    yield bus
    bus.close()


@pytest.fixture
def spi_bus(spi_tpm: SpiTpm) -> Iterator[RawBus]:
    bus = RawBus(spi_tpm.path)
    yield bus
    bus.close()
