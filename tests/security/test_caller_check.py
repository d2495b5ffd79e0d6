"""Threat: a process acts as a module it is not on the shared workload socket (signs with that
module's identity key), being a host process, a process in another module's container, or
one that reuses a pid.

Controls: the shared socket is off unless `[listen] shared_workload_socket = true`; on it, the
caller's cgroup must be exactly that of the module container's init and name the container, and
the pidfd taken at connect must show the caller still running once /proc is read (the pid-reuse
half is unit-tested in tests/unit/api/workload/test_workload_access.py). Module sockets, the
default, never depend on the check: a socket acts only as its own module.
"""

from __future__ import annotations

import asyncio
import base64
import json

import pytest

from firmware.api.client import ApiClient
from firmware.errors import Forbidden
from tests.peers.gateway import API
from tests.peers.waiting import wait_for_path, wait_until

pytestmark = pytest.mark.docker

SHARED_IN_CONTAINER = "/var/run/shared-workload.sock"
SIGN = {"keyId": "primary", "algo": "HMACSHA256", "data": base64.b64encode(b"x").decode()}


def generation(running, module: str) -> str:
    env = running.module_exec(module, "env").stdout.splitlines()
    (line,) = [entry for entry in env if entry.startswith("IOTEDGE_MODULEGENERATIONID=")]
    return line.partition("=")[2]


def sign_on_shared(running, caller: str, module: str, genid: str) -> tuple[int, dict]:
    """`caller`'s container signs as `module` on the shared socket: (status, answer)."""
    done = running.module_exec(
        caller,
        "uds_http",
        SHARED_IN_CONTAINER,
        "POST",
        f"/modules/{module}/genid/{genid}/sign?api-version={API}",
        json.dumps(SIGN),
    )
    status, _, text = done.stdout.partition("\n")
    assert status.strip().isdigit(), f"uds_http failed: {done.stdout!r} {done.stderr!r}"
    return int(status), json.loads(text)


def test_the_shared_socket_is_absent_unless_configured(gateway) -> None:
    running = gateway()
    wait_until(lambda: "workload API ready" in running.log, timeout_s=60, what="workload ready")
    assert "shared socket off" in running.log
    assert not (running.run_dir / "workload.sock").exists()
    status, _ = running.workload(running.agent, "GET", "/trust-bundle")
    assert status == 200, "module sockets are served without it"


def test_on_the_shared_socket_a_caller_acts_only_as_its_own_container(
    gateway, client_image
) -> None:
    running = gateway("[listen]\nshared_workload_socket = true\n")
    shared = running.run_dir / "workload.sock"
    wait_for_path(shared, timeout_s=60)
    options = {
        "Cmd": ["sleep", "3600"],
        "StopTimeout": 1,
        "HostConfig": {"NetworkMode": "none", "Binds": [f"{shared}:{SHARED_IN_CONTAINER}"]},
    }
    running.deploy("callera", client_image, options)
    running.deploy("callerb", client_image, options)
    # a module in the host's pid namespace: the old pid-namespace rule let every host process in
    host_pid = {**options, "HostConfig": {**options["HostConfig"], "PidMode": "host"}}
    running.deploy("callerh", client_image, host_pid)
    genid_a = generation(running, "callera")
    genid_b = generation(running, "callerb")
    genid_h = generation(running, "callerh")

    status, answer = sign_on_shared(running, "callerb", "callerb", genid_b)
    assert status == 200 and answer["digest"], answer
    status, answer = sign_on_shared(running, "callerb", "callera", genid_a)
    assert status == 403, answer
    assert "is not in the container of module 'callera'" in answer["message"]
    status, answer = sign_on_shared(running, "callerh", "callerh", genid_h)
    assert status == 200, answer

    # the host (this test, root on the host, in the host's pid namespace) is no module
    async def from_host() -> None:
        client = ApiClient(f"unix://{shared}", api_version=API)
        for module, genid in (
            ("callera", genid_a),
            ("callerh", genid_h),
            (running.agent, generation(running, running.agent)),
        ):
            with pytest.raises(Forbidden, match="is not in the container"):
                await client.request("POST", f"/modules/{module}/genid/{genid}/sign", body=SIGN)

    asyncio.run(from_host())
    assert "Traceback" not in running.log
