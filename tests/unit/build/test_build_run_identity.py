"""`build.py run|sim start --attestation` and what `run` reports of the device identity."""

from __future__ import annotations

import pytest

from buildkit.daemon import identity_lines
from tests.unit.build.test_build_cli import build_py


@pytest.mark.parametrize("command", [["run"], ["sim", "start"]])
def test_the_attestation_defaults_to_the_symmetric_key(command: list[str]) -> None:
    assert build_py.parse(command)[0].attestation == "symmetric_key"
    assert build_py.parse([*command, "--attestation", "tpm"])[0].attestation == "tpm"


def test_run_still_passes_the_daemon_its_own_arguments() -> None:
    args, rest = build_py.parse(["run", "--attestation", "tpm", "--log-level", "debug"])
    assert (args.attestation, rest) == ("tpm", ["--log-level", "debug"])


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "--attestation", "x509"],
        ["sim", "stop", "--attestation", "tpm"],
        ["sim", "status", "--attestation", "symmetric_key"],
    ],
)
def test_other_attestations_and_places_are_usage_errors(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        build_py.parse(argv)
    assert exited.value.code == 2
    assert "usage: build.py" in capsys.readouterr().err


STATUS_HEAD = "daemon: running\ndegraded: no\n"


@pytest.mark.parametrize("state", ["provisioned", "reprovisioned", "from cache"])
def test_the_identity_is_reported_once_the_device_has_one(state: str) -> None:
    shown = (
        f"{STATUS_HEAD}provisioning: dps, {state}\n  device: gw-1 on 127.0.0.1:4431\n"
        "  last result: ok (1s ago)\n"
    )
    assert identity_lines(shown) == [
        f"provisioning: dps, {state}",
        "device: gw-1 on 127.0.0.1:4431",
    ]


@pytest.mark.parametrize(
    "shown",
    [
        "",
        STATUS_HEAD,
        f"{STATUS_HEAD}provisioning: dps, waiting for provisioning\n  last result: 503\n",
        f"{STATUS_HEAD}provisioning: dps, provisioned\n",  # no device line (yet)
        f"{STATUS_HEAD}provisioning: dps, provisioned\n  last result: ok\n",
    ],
)
def test_nothing_is_reported_without_an_identity(shown: str) -> None:
    assert identity_lines(shown) is None
