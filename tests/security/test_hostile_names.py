"""Names that become paths, attacked through the management API and config.toml (docs/security.md).

A module name, an identity and `[agent] name` each become a directory (`<run_dir>/mnt/<name>/`),
a container name and a key label. One rule (`firmware.names`), matched against the whole text,
refuses a trailing newline, a path and a leading dot everywhere.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from firmware.errors import BadRequest
from tests.peers.program import daemon_argv, program_env

REPO = Path(__file__).resolve().parents[2]
HOSTILE = ["evil\n", "../../../tmp/escaped", ".hidden", "a/b", "x" * 64]


@pytest.mark.docker
def test_hostile_module_and_identity_names_are_refused(gateway, client_image) -> None:
    running = gateway()
    for name in HOSTILE:
        with pytest.raises(BadRequest, match="name"):
            running.deploy(name, client_image)
        with pytest.raises(BadRequest, match="moduleId"):
            running.request("POST", "/identities", {"moduleId": name})
    listed = running.request("GET", "/modules").json()
    names = {module["name"] for module in listed["modules"]}
    assert names.isdisjoint(HOSTILE)
    mnt = running.run_dir / "mnt"
    made = {entry.name for entry in mnt.iterdir()} if mnt.is_dir() else set()
    assert made.isdisjoint(HOSTILE) and "escaped" not in made
    assert not Path("/tmp/escaped").exists()


@pytest.fixture
def root() -> Iterator[Path]:
    made = Path(tempfile.mkdtemp(prefix="ekname", dir="/tmp"))
    try:
        yield made
    finally:
        shutil.rmtree(made, ignore_errors=True)


@pytest.mark.parametrize("agent", ["../../../tmp", "edgeAgent\n"])
def test_an_agent_name_that_is_a_path_stops_the_daemon_at_start(root: Path, agent: str) -> None:
    config = root / "config.toml"
    config.write_text(
        f'[paths]\ndata_dir = "{root}/data"\nrun_dir = "{root}/run"\n\n'
        '[console]\ndevice = "none"\n\n'
        f'[runtime]\nuri = "unix://{root}/no-engine.sock"\n\n'
        f"[agent]\nname = {json.dumps(agent)}\n"
    )
    config.chmod(0o600)
    done = subprocess.run(
        [*daemon_argv(), "run", "--config", str(config)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env=program_env(),
    )
    assert done.returncode != 0
    assert f"{config}:" in done.stderr
    assert "agent.name" in done.stderr
    assert not (root / "run").exists() or not any((root / "run").rglob("tmp"))
