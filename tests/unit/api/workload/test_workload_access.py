"""The caller check of the shared workload socket: the caller's cgroup must be exactly that of the
container's init and name the container, and the pidfd taken at connect must show the caller
still running once /proc has been read (a recycled pid is refused). The scoped module sockets and
the refusals of the policy itself; the check against real containers is
tests/security/test_caller_check.py."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from firmware.api.model import ApiRequest, PeerCredentials
from firmware.api.workload.access import (
    WorkloadAccess,
    cgroup_names_container,
    process_in_container,
    process_running,
)
from firmware.api.workload.errors import NotThisModule
from firmware.executor import BoundedExecutor
from firmware.runtime.status import RunningContainer

CID = "3f" * 32
OTHER = "ab" * 32
CGROUP_V1 = f"""12:pids:/docker/{CID}
11:memory:/docker/{CID}
1:name=systemd:/docker/{CID}
"""
CGROUP_V2 = f"0::/system.slice/docker-{CID}.scope\n"
HOST = "12:pids:/user.slice\n0::/user.slice/session-1.scope\n"


def test_cgroup_paths_name_the_container_only_as_their_own_leaf() -> None:
    assert cgroup_names_container(CGROUP_V1, CID)
    assert cgroup_names_container(CGROUP_V2, CID)
    assert cgroup_names_container(f"0::/machine.slice/libpod-{CID}.scope\n", CID)
    assert not cgroup_names_container(HOST, CID)
    assert not cgroup_names_container(CGROUP_V1, OTHER)
    assert not cgroup_names_container(f"0::/docker/{CID}/child\n", CID)
    assert not cgroup_names_container(f"0::/user.slice/{CID}-fake\n", CID)
    assert not cgroup_names_container(f"0::/user.slice/x{CID}\n", CID)
    assert not cgroup_names_container("0::/\n", "")


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    child = subprocess.Popen(["sleep", "60"])
    try:
        yield child
    finally:
        child.kill()
        child.wait()


def pidfd_of_exited_child() -> int:
    """A pidfd whose process has exited and been reaped: its pid may now name anyone."""
    child = subprocess.Popen(["true"])
    pidfd = os.pidfd_open(child.pid)
    child.wait()
    return pidfd


def test_a_pidfd_tells_a_running_process_from_an_exited_one(sleeper) -> None:
    running = os.pidfd_open(sleeper.pid)
    exited = pidfd_of_exited_child()
    try:
        assert process_running(running)
        assert not process_running(exited)
        sleeper.kill()
        sleeper.wait()
        assert not process_running(running)
    finally:
        os.close(running)
        os.close(exited)


def fake_proc(root: Path, cgroups: dict[int, str]) -> str:
    for pid, text in cgroups.items():
        (root / str(pid)).mkdir(parents=True)
        (root / str(pid) / "cgroup").write_text(text)
    return str(root)


def test_process_in_container_needs_the_inits_exact_cgroup(tmp_path: Path, sleeper) -> None:
    proc = fake_proc(
        tmp_path,
        {
            10: CGROUP_V1,  # the caller, in the container
            20: CGROUP_V1,  # the container's init
            30: HOST,  # a host process
            40: f"12:pids:/docker/{CID}/nested\n",  # below the container's cgroup
            50: "0::/\n",  # the init of a container without a cgroup of its own
            60: "0::/\n",  # a host process beside it (the same pid namespace, say)
        },
    )
    pidfd = os.pidfd_open(sleeper.pid)
    try:

        def caller(pid: int, fd: int | None = pidfd) -> PeerCredentials:
            return PeerCredentials(pid, 0, 0, pidfd=fd)

        container = RunningContainer(CID, 20)
        assert process_in_container(caller(10), container, proc)
        assert not process_in_container(caller(30), container, proc)
        assert not process_in_container(caller(40), container, proc)
        assert not process_in_container(caller(99), container, proc), "no such process"
        assert not process_in_container(caller(10), RunningContainer(OTHER, 20), proc)
        assert not process_in_container(caller(10), RunningContainer(CID, 0), proc)
        assert not process_in_container(caller(10), RunningContainer(CID, 98), proc)
        assert not process_in_container(caller(60), RunningContainer(CID, 50), proc)
        assert not process_in_container(caller(10, None), container, proc), "no pidfd"
    finally:
        os.close(pidfd)


def test_a_recycled_pid_is_refused(tmp_path: Path) -> None:
    """The caller's pid now names a process in the container, but the process that connected
    (pinned by its pidfd) has exited: not the caller any more."""
    proc = fake_proc(tmp_path, {10: CGROUP_V2, 20: CGROUP_V2})
    pidfd = pidfd_of_exited_child()
    try:
        peer = PeerCredentials(10, 0, 0, pidfd=pidfd)
        assert not process_in_container(peer, RunningContainer(CID, 20), proc)
    finally:
        os.close(pidfd)


def shared(peer: PeerCredentials | None) -> ApiRequest:
    return ApiRequest("POST", "/modules/a/genid/1/sign", listener="workload", peer=peer)


async def refusal(access: WorkloadAccess, request: ApiRequest, module: str) -> str:
    with pytest.raises(NotThisModule) as refused:
        await access.check(request, module)
    assert refused.value.http_status == 403
    return refused.value.render()


def test_the_policy_refuses_host_processes_and_unknown_callers() -> None:
    me = os.pidfd_open(os.getpid())
    # Our parent runs in our cgroup and pid namespace: the old pid-namespace rule let us in.
    containers = {"host": RunningContainer(CID, os.getppid())}

    async def lookup(module: str) -> RunningContainer | None:
        return containers.get(module)

    async def scenario() -> None:
        executor = BoundedExecutor()
        try:
            access = WorkloadAccess(lookup, executor.run)
            ours = PeerCredentials(os.getpid(), os.getuid(), os.getgid(), pidfd=me)
            message = await refusal(access, shared(ours), "host")
            assert f"pid {os.getpid()} is not in the container of module 'host'" in message
            assert "no running container" in await refusal(access, shared(ours), "gone")
            unpinned = PeerCredentials(os.getpid(), os.getuid(), os.getgid())
            assert "unknown" in await refusal(access, shared(unpinned), "host")
            assert "unknown" in await refusal(access, shared(None), "host")
            # a module's own socket: that module only, whoever calls; the console: any module
            scoped = ApiRequest("GET", "/", listener="workload:a")
            await access.check(scoped, "a")
            assert "belongs to module 'a'" in await refusal(access, scoped, "b")
            await access.check(ApiRequest("GET", "/", listener="console"), "a")
        finally:
            executor.shutdown()
            os.close(me)

    asyncio.run(scenario())
