"""TCTI strings from `[tpm] tcti`, and the errors for a TPM that is not there."""

from __future__ import annotations

import socket

import pytest

from firmware.errors import ConfigError, DeviceError
from firmware.tpm.errors import TpmUnavailable
from firmware.tpm.tcti import TctiSpec, open_tcti


def test_device_default_and_explicit():
    assert TctiSpec.parse("device") == TctiSpec("device", "/dev/tpmrm0")
    spec = TctiSpec.parse("device:/dev/tpm0")
    assert spec.device_path == "/dev/tpm0"
    assert spec.address is None
    assert spec.where == "/dev/tpm0"
    assert str(spec) == "device:/dev/tpm0"


@pytest.mark.parametrize("name", ["swtpm", "mssim"])
def test_simulators(name):
    spec = TctiSpec.parse(f"{name}:host=127.0.0.1,port=2400")
    assert spec.address == ("127.0.0.1", 2400)
    assert spec.where == f"{name} at 127.0.0.1:2400"
    assert spec.device_path is None
    assert TctiSpec.parse(name).address == ("localhost", 2321)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("tpm0", '"tpm0" is not a device URL'),
        ("", '"" is not a device URL'),
        ("tis-i2c:///dev/i2c-1", "unknown TCTI 'tis-i2c'"),
        ("swtpm:host=h,port=http", 'port "http" is not a TCP port'),
        ("swtpm:port=70000", 'port "70000" is not a TCP port'),
        ("mssim:host=h,speed=9", 'unknown option "speed=9"'),
    ],
)
def test_bad_strings_are_config_errors(text, fragment):
    with pytest.raises(ConfigError) as caught:
        TctiSpec.parse(text)
    assert fragment in caught.value.message
    assert caught.value.message.startswith("[tpm] tcti")


def test_missing_device_names_the_driver_and_the_setting(tmp_path):
    path = tmp_path / "tpmrm0"
    with pytest.raises(TpmUnavailable) as caught:
        open_tcti(TctiSpec.parse(f"device:{path}"))
    assert isinstance(caught.value, DeviceError)
    assert caught.value.message == f"no TPM at {path}"
    assert "tpm_tis driver" in caught.value.hint
    assert "[tpm] device in config.toml" in caught.value.hint


def test_closed_port_says_connection_refused():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(TpmUnavailable) as caught:
        open_tcti(TctiSpec.parse(f"swtpm:host=127.0.0.1,port={port}"))
    assert caught.value.message == (
        f"no TPM simulator at 127.0.0.1:{port} (swtpm TCTI): connection refused"
    )
    assert "is swtpm running" in caught.value.hint


def test_tcti_library_that_is_not_installed(monkeypatch):
    # tabrmd's TCTI is not installed on the build machine; say so rather than "IO failure".
    spec = TctiSpec.parse("tabrmd")
    with pytest.raises(TpmUnavailable) as caught:
        open_tcti(spec)
    assert "libtss2-tcti-tabrmd.so.0" in caught.value.message
