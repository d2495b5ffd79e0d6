"""`edgekeeper keys migrate --all --to pkcs11|tpm --apply` on a running daemon, modules signing.

The gateway of `test_reload_continuity` (a real dockerd, the agent and one deployed module, both
signing and asking for server certificates without pause) gets a SoftHSM2 token or the swtpm
configured by a reload, keeping `file` as the default backend; then the CLI moves every key into
it. Every
request before, during and after the move must succeed with the digests the device identity key
gave before, and afterwards no key is left in files.
"""

from __future__ import annotations

import asyncio
import subprocess
import uuid

import pytest

from tests.integration.keys.test_reload_continuity import (
    REPO,
    Gateway,
    Traffic,
    deploy,
    gateway,
    generation,
    signed_enough,
)
from tests.peers.program import cli_argv, program_env
from tests.peers.waiting import wait_until

# Both devices are session fixtures set up before the gateway starts (SOFTHSM2_CONF must be in
# the daemon's environment); each case configures one of them.
pytestmark = [pytest.mark.docker, pytest.mark.softhsm, pytest.mark.swtpm]

__all__ = ["gateway"]  # the fixture, used by name


def _cli(gw: Gateway, *argv: str) -> subprocess.CompletedProcess[str]:
    socket = f"unix://{gw.run_dir / 'mgmt.sock'}"
    return subprocess.run(
        [*cli_argv(), "--socket", socket, *argv],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=program_env(),
        timeout=60,
        check=False,
    )


def _token(softhsm, swtpm) -> str:
    token = softhsm.new_token(f"migrate-{uuid.uuid4().hex[:6]}")
    return (
        f'[keys.pkcs11]\nmodule = "{softhsm.module}"\ntoken_label = "{token.label}"\n'
        f'pin = "{token.user_pin}"\n'
    )


def _tpm(softhsm, swtpm) -> str:
    return f'[tpm]\ntcti = "{swtpm.tcti}"\n'


@pytest.mark.parametrize(
    ("target", "device"),
    [
        pytest.param("pkcs11", _token, id="pkcs11"),
        pytest.param("tpm", _tpm, id="tpm"),
    ],
)
def test_keys_migrate_all_while_modules_sign_fails_no_request(
    softhsm, swtpm, gateway, client_image, target, device
):
    gateway.reload_with(f"50-{target}.toml", device(softhsm, swtpm))
    wait_until(
        lambda: "service reconfigured in place" in gateway.log, timeout_s=30, what="the reload"
    )
    module = f"ekmgmod{uuid.uuid4().hex[:6]}"

    async def scenario():
        await deploy(gateway, module, client_image)
        modules = {name: await generation(gateway, name) for name in (gateway.agent, module)}
        expected = {name: gateway.expected_digest(name, gen) for name, gen in modules.items()}
        traffic = Traffic(gateway, modules)
        try:
            await signed_enough(traffic)
            plan = await asyncio.to_thread(
                _cli, gateway, "keys", "migrate", "--all", "--to", target
            )
            moved = await asyncio.to_thread(
                _cli, gateway, "keys", "migrate", "--all", "--to", target, "--apply"
            )
            traffic.phase = 1
            await signed_enough(traffic)
        finally:
            await traffic.stop()
        listed = await asyncio.to_thread(_cli, gateway, "keys", "list")
        return expected, traffic, plan, moved, listed

    expected, traffic, plan, moved, listed = asyncio.run(scenario())

    assert plan.returncode == 0, plan.stderr
    assert "dry run: nothing was changed" in plan.stdout
    assert moved.returncode == 0, moved.stderr
    rows = [line.split() for line in moved.stdout.splitlines()[1:] if not line.startswith(" ")]
    statuses = {row[0]: row[-1] for row in rows if len(row) == 6}
    assert "device-identity" in statuses and "edgekeeper-handle-validation" in statuses
    assert set(statuses.values()) == {"moved"}, moved.stdout
    for name, outcomes in traffic.signed.items():
        failed = [o for o in outcomes if o.status != 200]
        assert not failed, f"{name}: {len(failed)} of {len(outcomes)} failed, first {failed[0]}"
        assert {o.answer for o in outcomes} == {expected[name]}, f"{name}: its key changed"
    for name, outcomes in traffic.certified.items():
        failed = [o for o in outcomes if o.status != 201]
        assert not failed, f"{name}: {len(failed)} of {len(outcomes)} certificates failed"
    assert not list((gateway.data_dir / "keys").glob("*.key")), listed.stdout
    in_files = [line for line in listed.stdout.splitlines() if line.split()[2:3] == ["file"]]
    assert not in_files, listed.stdout
