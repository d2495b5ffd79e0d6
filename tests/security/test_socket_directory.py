"""Threat: a module makes the root daemon chmod/chown a host file of its choosing through its
socket directory (`<run_dir>/mnt/<module>/`, mounted in its container at /var/run/iotedge).

A module that could write there would watch for the daemon's sockets and swap a name for a
symlink to, say, /etc/shadow just before the daemon changes its mode or owner by that name.
Controls: the directory is mounted read-only; sockets are made in a private directory under
`mnt/` (which no container sees) and renamed into place, so the daemon never changes anything
through a name in a module's directory, whatever the mount.

The attacker is `symlink_racer` (tests/peers/symlink_racer.c) in a real container that has the
directory mounted read-write (the worst case: a hostile bind, or a container made before the
mount was read-only). It swaps every entry but the final socket names for a symlink to a victim
file the moment it appears, while `ModuleSockets` opens and closes the sockets hundreds of times.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import stat
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from firmware.api.router import Router
from firmware.api.workload.sockets import ModuleSockets
from tests.peers.waiting import wait_until

pytestmark = pytest.mark.docker

REPO = Path(__file__).resolve().parents[2]
RACER_SOURCE = REPO / "tests" / "peers" / "symlink_racer.c"
IN_CONTAINER = "/var/run/iotedge"
FINAL_NAMES = ("workload.sock", "mgmt.sock")
REOPENINGS = 300


@pytest.fixture(scope="module")
def symlink_racer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.fail("gcc is needed to build the attacker: apt-get install gcc libc6-dev")
    built = tmp_path_factory.mktemp("racer") / "symlink_racer"
    done = subprocess.run(
        [gcc, "-static", "-O2", "-o", str(built), str(RACER_SOURCE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return built


@pytest.fixture
def victim(tmp_path: Path) -> Iterator[Path]:
    """A root-owned 0600 file, standing for /etc/shadow."""
    path = tmp_path / "victim"
    path.write_text("root:secret\n")
    path.chmod(0o600)
    yield path


def fingerprint(path: Path) -> tuple[int, int, int, str]:
    info = path.stat()
    return info.st_mode, info.st_uid, info.st_gid, path.read_text()


def test_reopened_sockets_never_expose_a_name_a_module_could_swap(
    sim_dockerd, client_image, symlink_racer: Path, victim: Path
) -> None:
    run_dir = Path(tempfile.mkdtemp(prefix="eksd", dir="/tmp"))
    module = f"racer{uuid.uuid4().hex[:6]}"
    sockets = ModuleSockets(run_dir, Router())
    module_dir = asyncio.run(sockets.open(module, module, management=True))
    asyncio.run(sockets.close_all())
    before = fingerprint(victim)
    container = sim_dockerd.docker(
        "create",
        "--network",
        "none",
        "-v",
        f"{module_dir}:{IN_CONTAINER}",  # read-write: the worst case
        client_image,
        "/symlink_racer",
        IN_CONTAINER,
        str(victim),
        *FINAL_NAMES,
    ).stdout.strip()
    try:
        sim_dockerd.docker("cp", str(symlink_racer), f"{container}:/symlink_racer")
        sim_dockerd.docker("start", container)
        wait_until(
            lambda: "ready" in sim_dockerd.docker("logs", container).stdout,
            timeout_s=30,
            what="the attacker to watch the directory",
        )

        async def reopen() -> None:
            for _ in range(REOPENINGS):
                await sockets.open(module, module, management=True)
                for name in FINAL_NAMES:
                    info = (module_dir / name).lstat()
                    assert stat.S_ISSOCK(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o666
                await sockets.close_all()

        asyncio.run(reopen())
        # One more socket, then the attacker has had time to see everything before it.
        asyncio.run(sockets.open(module, module))
        asyncio.run(sockets.close_all())
        seen = sim_dockerd.docker("logs", container).stdout.split()
        assert seen == ["ready"], f"names a module could swap appeared: {seen[1:12]}"
        assert fingerprint(victim) == before
        assert sorted(os.listdir(run_dir / "mnt")) == [module], "staging left behind"
        assert not any(p.is_symlink() for p in module_dir.iterdir())
        state = json.loads(sim_dockerd.docker("inspect", container).stdout)[0]["State"]
        assert state["Running"], "the attacker must have watched throughout"
    finally:
        sim_dockerd.docker("rm", "-f", container, check=False)
        shutil.rmtree(run_dir, ignore_errors=True)


def agent_mount(running) -> dict:
    container = running.container_of(running.agent)
    mounts = json.loads(running.dockerd.docker("inspect", container).stdout)[0]["Mounts"]
    (mount,) = [m for m in mounts if m["Destination"] == IN_CONTAINER]
    return mount


def answers(running, socket: str, target: str) -> int | None:
    """The status `uds_http` in the agent's container gets for GET `target` on `socket`."""
    done = running.module_exec(
        running.agent,
        "uds_http",
        f"{IN_CONTAINER}/{socket}",
        "GET",
        f"{target}?api-version=2020-10-10",
    )
    status = done.stdout.partition("\n")[0].strip()
    return int(status) if status.isdigit() else None


def test_the_socket_directory_is_read_only_in_the_container(gateway) -> None:
    running = gateway()
    mount = agent_mount(running)
    assert mount["Source"] == str(running.run_dir / "mnt" / running.agent)
    assert mount["RW"] is False
    for argv in (
        ("touch", f"{IN_CONTAINER}/planted"),
        ("ln", "-sf", "/etc/passwd", f"{IN_CONTAINER}/workload.sock"),
        ("rm", "-f", f"{IN_CONTAINER}/mgmt.sock"),
        ("mv", f"{IN_CONTAINER}/workload.sock", f"{IN_CONTAINER}/moved"),
    ):
        done = running.module_exec(running.agent, *argv)
        assert done.returncode != 0, argv
        # busybox ln reports the EEXIST it met first; the others the read-only mount
        assert "Read-only file system" in done.stderr or argv[0] == "ln", done.stderr
    # connecting needs no write access to the mount: both sockets still answer
    assert answers(running, "workload.sock", "/trust-bundle") == 200
    assert answers(running, "mgmt.sock", "/modules") == 200
    module_dir = running.run_dir / "mnt" / running.agent
    assert sorted(os.listdir(module_dir)) == sorted(FINAL_NAMES)
    assert all(stat.S_ISSOCK((module_dir / name).lstat().st_mode) for name in FINAL_NAMES)


def test_daemon_restarts_under_a_symlinking_module_leave_the_victim_alone(
    gateway, victim: Path
) -> None:
    names = " ".join((*FINAL_NAMES, ".s.sock", "s"))
    attack = f"while :; do for n in {names}; do ln -sf {victim} {IN_CONTAINER}/$n; done; done"
    running = gateway(
        agent_options={
            "Cmd": ["sh", "-c", f"{attack} 2>/dev/null"],
            "StopTimeout": 1,
            "HostConfig": {"NetworkMode": "none"},
        }
    )
    before = fingerprint(victim)
    for _ in range(3):
        wait_until(
            lambda: answers(running, "workload.sock", "/trust-bundle") == 200,
            timeout_s=60,
            what="the agent to reach its socket",
        )
        running.stop()
        running.start()
    wait_until(
        lambda: answers(running, "mgmt.sock", "/modules") == 200,
        timeout_s=60,
        what="the agent to reach the management socket",
    )
    assert fingerprint(victim) == before
    module_dir = running.run_dir / "mnt" / running.agent
    assert sorted(os.listdir(module_dir)) == sorted(FINAL_NAMES)
    assert not any(p.is_symlink() for p in module_dir.iterdir())
