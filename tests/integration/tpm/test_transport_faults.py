"""Faults on edgekeeper's own TPM transports, seen from the key backend: a correct retry or one
clear error naming the device, never a hang.

Each test drives the TPM layer over a bus simulator at register level (TIS over I²C or SPI) or a
serial line relaying frames, each executing on a swtpm of the test's own, and injects one fault
while a key signs.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from firmware.keys.backend import KeyKind, SignAlgorithm
from firmware.keys.errors import KeyBackendUnavailable
from firmware.keys.tpm import TpmBackend
from firmware.tpm.connection import TpmConnection
from tests.peers.i2c_tpm import I2cTpm
from tests.peers.serial_tpm import SerialTpm
from tests.peers.spi_tpm import SpiTpm

pytestmark = pytest.mark.swtpm

COMMAND_TIMEOUT_S = 3.0
DATA = b"gateway"
ECDSA = SignAlgorithm.ECDSA_SHA256


_opened: list[TpmBackend] = []


def _backend(url: str, state_dir: Path) -> TpmBackend:
    backend = TpmBackend(
        url, state_dir, connection=TpmConnection(url, command_timeout=COMMAND_TIMEOUT_S)
    )
    _opened.append(backend)
    return backend


@pytest.fixture(autouse=True)
def _close_backends() -> Iterator[None]:
    yield
    while _opened:
        _opened.pop().close()


def _signs(backend: TpmBackend, name: str = "device-id") -> None:
    """The key signs, and the signature verifies with its public key."""
    backend.create(name, KeyKind.EC_P256)
    signature = backend.sign(name, ECDSA, DATA)
    public = serialization.load_der_public_key(backend.public_key(name))
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(signature, DATA, ec.ECDSA(hashes.SHA256()))


@pytest.fixture(params=["i2c", "spi"])
def bus(request: pytest.FixtureRequest, fresh_swtpm, tmp_path: Path) -> Iterator[I2cTpm | SpiTpm]:
    simulator = I2cTpm if request.param == "i2c" else SpiTpm
    device = simulator(tmp_path / "bus.sock", fresh_swtpm.host, fresh_swtpm.port)
    device.start()
    yield device
    device.stop()
    assert not device.errors


def _url(device: I2cTpm | SpiTpm) -> str:
    return f"{'tis-i2c' if isinstance(device, I2cTpm) else 'tis-spi'}://{device.path}"


def test_a_tpm_reset_in_the_middle_of_a_command_is_recovered(bus, tmp_path):
    backend = _backend(_url(bus), tmp_path / "keys")
    _signs(backend)
    bus.faults.reset_mid_command()
    _signs(backend, "after-reset")
    assert backend._tpm.resets >= 1


def test_a_slow_tpm_is_waited_for(bus, tmp_path):
    backend = _backend(_url(bus), tmp_path / "keys")
    bus.faults.slow(0.5)
    started = time.monotonic()
    _signs(backend)
    assert time.monotonic() - started >= 0.5


def test_one_bus_error_is_retried(bus, tmp_path):
    backend = _backend(_url(bus), tmp_path / "keys")
    bus.faults.bus_error(1)
    _signs(backend)


def test_a_dead_bus_is_one_clear_error_in_bounded_time(bus, tmp_path):
    backend = _backend(_url(bus), tmp_path / "keys")
    backend.create("device-id", KeyKind.EC_P256)
    bus.faults.bus_error(10_000)
    started = time.monotonic()
    with pytest.raises(KeyBackendUnavailable) as caught:
        backend.sign("device-id", ECDSA, DATA)
    assert time.monotonic() - started < 2 * COMMAND_TIMEOUT_S
    assert str(bus.path) in caught.value.message
    assert "errno 5" in caught.value.message or "Input/output error" in caught.value.message
    bus.faults.clear()
    _signs(backend, "after-the-fault")


def test_a_stuck_burst_count_is_one_clear_error_in_bounded_time(bus, tmp_path):
    backend = _backend(_url(bus), tmp_path / "keys")
    backend.create("device-id", KeyKind.EC_P256)
    bus.faults.stuck_burst(None)
    started = time.monotonic()
    with pytest.raises(KeyBackendUnavailable) as caught:
        backend.sign("device-id", ECDSA, DATA)
    assert time.monotonic() - started < 2 * COMMAND_TIMEOUT_S
    assert "burst" in caught.value.message
    bus.faults.clear()
    _signs(backend, "after-the-fault")


def test_i2c_naks_and_a_bad_checksum_are_retried(fresh_swtpm, tmp_path):
    device = I2cTpm(tmp_path / "bus.sock", fresh_swtpm.host, fresh_swtpm.port)
    device.start()
    try:
        backend = _backend(_url(device), tmp_path / "keys")
        device.faults.nak(2)
        _signs(backend)
        device.faults.nak(1, kind="data")
        _signs(backend, "after-data-nak")
        device.faults.bad_checksum(1)
        _signs(backend, "after-bad-checksum")
    finally:
        device.stop()
    assert not device.errors


def test_spi_wait_states_are_waited_through(fresh_swtpm, tmp_path):
    device = SpiTpm(tmp_path / "bus.sock", fresh_swtpm.host, fresh_swtpm.port)
    device.start()
    try:
        device.faults.wait_states(7)
        _signs(_backend(_url(device), tmp_path / "keys"))
    finally:
        device.stop()
    assert not device.errors


@pytest.fixture
def line(fresh_swtpm) -> Iterator[SerialTpm]:
    serial_tpm = SerialTpm(fresh_swtpm)
    serial_tpm.start()
    yield serial_tpm
    serial_tpm.stop()


def test_serial_a_tpm_reset_and_a_trickle_are_survived(line, tmp_path):
    backend = _backend(line.url, tmp_path / "keys")
    _signs(backend)
    line.reset_mid_command()
    _signs(backend, "after-reset")
    line.trickle(0.001)
    _signs(backend, "trickled")


def test_serial_a_silent_tpm_costs_one_deadline_then_the_command_runs_again(line, tmp_path):
    backend = _backend(line.url, tmp_path / "keys")
    backend.create("device-id", KeyKind.EC_P256)
    line.silent()
    started = time.monotonic()
    backend.sign("device-id", ECDSA, DATA)
    assert COMMAND_TIMEOUT_S <= time.monotonic() - started < 2 * COMMAND_TIMEOUT_S


def test_serial_a_dead_line_is_one_clear_error_in_bounded_time(line, tmp_path):
    backend = _backend(line.url, tmp_path / "keys")
    backend.create("device-id", KeyKind.EC_P256)
    line.stop()
    started = time.monotonic()
    with pytest.raises(KeyBackendUnavailable) as caught:
        backend.sign("device-id", ECDSA, DATA)
    assert time.monotonic() - started < 3 * COMMAND_TIMEOUT_S
    assert urlsplit(line.url).path in caught.value.message


@pytest.mark.parametrize("fault", ["garbage", "drop"])
def test_serial_garbled_answers_are_an_error_or_a_retry_and_the_line_recovers(
    line, tmp_path, fault
):
    backend = _backend(line.url, tmp_path / "keys")
    backend.create("device-id", KeyKind.EC_P256)
    if fault == "garbage":
        line.garbage(b"\x00\xffnoise\x00")
    else:
        line.drop_bytes(3)
    started = time.monotonic()
    try:
        backend.sign("device-id", ECDSA, DATA)
    except KeyBackendUnavailable as failed:
        assert urlsplit(line.url).path in failed.message
    assert time.monotonic() - started < 3 * COMMAND_TIMEOUT_S
    _signs(backend, "after-the-fault")
