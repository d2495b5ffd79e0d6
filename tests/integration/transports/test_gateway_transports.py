"""The daemon (the built binary under `build.py test`) keeps its keys in a TPM it drives itself:
TIS over a simulated SPI bus and TPM frames over a pseudo-terminal, each backed by swtpm; and a
device that is not a bus is one clear message, not a crash.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from firmware.errors import Unavailable
from tests.peers.serial_tpm import SerialTpm
from tests.peers.spi_tpm import SpiTpm
from tests.peers.waiting import wait_until

pytestmark = [pytest.mark.docker, pytest.mark.swtpm]


def _tpm_toml(url: str) -> str:
    return f'[tpm]\ndevice = "{url}"\n\n[keys]\ndefault_backend = "tpm"\n'


def _tpm_keys(gw) -> list[dict] | None:
    """The keys the TPM holds, None while the key service is still opening it."""
    try:
        listed = gw.request("GET", "/keys").json()
    except Unavailable:
        return None
    return [key for key in listed["keys"] if key["backend"] == "tpm"] or None


@pytest.fixture(params=["tis-spi", "mssim+serial"])
def tpm_url(request, fresh_swtpm, tmp_path) -> Iterator[str]:
    if request.param == "tis-spi":
        device = SpiTpm(tmp_path / "spi.sock", fresh_swtpm.host, fresh_swtpm.port)
        device.start()
        yield f"tis-spi://{device.path}"
        device.stop()
        assert not device.errors
    else:
        line = SerialTpm(fresh_swtpm)
        line.start()
        yield line.url
        line.stop()


def test_the_agent_identity_key_lives_in_the_tpm_behind_the_transport(gateway, tpm_url):
    gw = gateway(_tpm_toml(tpm_url))
    keys = wait_until(lambda: _tpm_keys(gw), timeout_s=60, what="a key in the TPM")
    assert keys
    status = gw.request("GET", "/daemon/status").json()
    (service,) = [s for s in status["services"] if s["name"] == "keys"]
    assert service["detail"]["tpm"] == tpm_url
    listing = gw.cli("keys", "list")
    assert listing.returncode == 0, listing.stderr
    assert "tpm" in listing.stdout


def test_a_device_that_is_not_a_bus_is_named_in_the_status(gateway):
    gw = gateway(_tpm_toml("tis-i2c:///dev/null?addr=0x2e"))

    def keys_line() -> str | None:
        shown = gw.cli("status").stdout.splitlines()
        return next((line for line in shown if line.startswith("keys ") and "null" in line), None)

    line = wait_until(keys_line, timeout_s=30, what="the TPM's error in `edgekeeper status`")
    assert "/dev/null is not an I²C adapter" in line
    assert gw.process is not None and gw.process.poll() is None
