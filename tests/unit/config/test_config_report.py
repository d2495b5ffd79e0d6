"""`config validate` and `config show`: verdict text, redaction, sources, round trip."""

from __future__ import annotations

import json
import tomllib

from firmware.config import load_config
from firmware.config.loader import LayerSource, evaluate
from firmware.config.report import REDACTED, show_effective, validate_report

SECRETS = """\
hostname = "gw-1"

[provisioning]
source = "manual"
connection_string = "HostName=h.azure-devices.net;DeviceId=d;SharedAccessKey=c2VjcmV0LWtleQ=="

[keys.pkcs11]
module = "/usr/lib/softhsm/libsofthsm2.so"
token_label = "edgekeeper"
pin = "1234-very-secret"

[edge_ca]
cert = "file:///etc/edge-ca.pem"
pk = "pkcs11:slot-id=0;object=edge%20ca?pin-value=4321-secret"

[agent.config]
createOptions = { HostConfig = { Binds = ["/iotedge:/iotedge"] }, "Env" = ["A=1"] }

[agent.config.auth]
serveraddress = "example.azurecr.io"
username = "user"
password = "registry-secret"

[agent.env]
RuntimeLogLevel = "debug"
"Odd Key" = 3
"""

ROUND_TRIP = """\
hostname = "gw-2"
[provisioning]
source = "manual"
iothub_hostname = "h.azure-devices.net"
device_id = "d"
[provisioning.authentication]
method = "x509"
identity_cert = "file:///c.pem"
identity_pk = "file:///k.pem"
[listen]
socket_group = "edge"
socket_mode = 0o600
[agent.config]
createOptions = { HostConfig = { Binds = ["/a:/b"], Privileged = false }, Env = ["A=1"] }
[agent.env]
RuntimeLogLevel = "debug"
"Odd Key" = 3.5
[keys.backends]
device-id = "tpm"
[watchdog]
max_retries = 7
"""

DPS = """\
[provisioning]
source = "dps"
id_scope = "0ne00000000"
[provisioning.attestation]
method = "symmetric_key"
registration_id = "dev"
symmetric_key = { value = "c3ltbWV0cmljLXNlY3JldA==" }
"""


def test_secrets_never_appear_in_show(write) -> None:
    config = load_config(write("config.toml", SECRETS))
    for fmt in ("toml", "json"):
        for sources in (False, True):
            shown = show_effective(config, fmt, sources=sources)
            for secret in ("c2VjcmV0LWtleQ", "very-secret", "4321-secret", "registry-secret"):
                assert secret not in shown
            assert REDACTED in shown
    dps = show_effective(load_config(write("dps.toml", DPS)))
    assert "c3ltbWV0cmljLXNlY3JldA" not in dps
    assert 'value = "<redacted>"' in dps
    assert 'registration_id = "dev"' in dps


def test_show_is_valid_toml_that_loads_back_to_the_same_config(write) -> None:
    config = load_config(write("config.toml", SECRETS))
    shown = show_effective(config)
    parsed = tomllib.loads(shown)
    assert parsed["keys"]["pkcs11"]["pin"] == REDACTED
    assert parsed["edge_ca"]["pk"] == "pkcs11:slot-id=0;object=edge%20ca?pin-value=<redacted>"
    assert parsed["agent"]["config"]["createOptions"] == {
        "HostConfig": {"Binds": ["/iotedge:/iotedge"]},
        "Env": ["A=1"],
    }
    assert parsed["agent"]["env"] == {"RuntimeLogLevel": "debug", "Odd Key": 3}


def test_show_without_secrets_loads_back_to_an_equal_config(write) -> None:
    config = load_config(write("config.toml", ROUND_TRIP))
    shown = show_effective(config)
    again = evaluate([LayerSource("shown.toml", show_effective_without_board(shown))])
    assert again.problems == ()
    assert again.config == config


def show_effective_without_board(shown: str) -> str:
    """The shown text with its [board] tables dropped, so it can load as a config file."""
    kept: list[str] = []
    skipping = False
    for line in shown.splitlines():
        if line.startswith("["):
            skipping = line.startswith("[board")
        if not skipping:
            kept.append(line)
    return "\n".join(kept) + "\n"


def test_sources_name_file_and_line_or_default(write) -> None:
    path = write("config.toml", SECRETS)
    shown = show_effective(load_config(path, "sim"), sources=True)
    lines = shown.splitlines()
    assert f'hostname = "gw-1"  # {path}:1' in lines
    assert 'level = "info"  # default' in lines
    assert any(line.startswith('device = "swtpm:') and "boards/sim.toml:" in line for line in lines)
    document = json.loads(show_effective(load_config(path), "json", sources=True))
    assert document["sources"]["keys.pkcs11.pin"] == f"{path}:10"
    assert document["config"]["keys"]["pkcs11"]["pin"] == REDACTED


def test_validate_report_for_a_good_and_a_bad_config(write) -> None:
    good = write("good.toml", SECRETS)
    ok, text = validate_report(good, "sim")
    assert ok
    assert text.startswith("configuration is valid (board sim; layers: ")
    assert str(good) in text
    bad = write("bad.toml", '[console]\nbaud = 1\n[logging]\nlevel = "loud"\n')
    ok, text = validate_report(bad)
    assert not ok
    lines = text.splitlines()
    assert lines[0].startswith(f"{bad}:2: console.baud: 1 is out of range")
    assert lines[1].startswith(f"{bad}:4: logging.level: ")
    assert lines[2] == f"2 problems (layers: {bad})"


def test_validate_report_without_a_config_file_says_so(private_system) -> None:
    ok, text = validate_report(None, None)
    assert ok
    assert f"{private_system} does not exist" in text
