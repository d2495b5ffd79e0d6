"""The workload API's pure parts: container membership from /proc, token buckets, the module
environment and binds."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from firmware.api.workload.access import (
    cgroup_names_container,
    process_in_container,
)
from firmware.api.workload.environment import (
    DeviceFacts,
    ModuleMounts,
    decorate,
    module_environment,
)
from firmware.api.workload.ratelimit import RateLimit, SocketRateLimits, TokenBucket
from firmware.errors import TooManyRequests
from firmware.runtime.status import RunningContainer

CID = "3f" * 32
CGROUP_V1 = f"""12:pids:/docker/{CID}
11:memory:/docker/{CID}
1:name=systemd:/docker/{CID}
"""
CGROUP_V2 = f"0::/system.slice/docker-{CID}.scope\n"


def test_cgroup_lines_name_the_container() -> None:
    assert cgroup_names_container(CGROUP_V1, CID)
    assert cgroup_names_container(CGROUP_V2, CID)
    assert not cgroup_names_container("12:pids:/user.slice\n0::/\n", CID)
    assert not cgroup_names_container(CGROUP_V1, "ab" * 32)


def _fake_proc(root: Path, pid: int, cgroup: str, namespace: str) -> None:
    (root / str(pid) / "ns").mkdir(parents=True)
    (root / str(pid) / "cgroup").write_text(cgroup)
    os.symlink(namespace, root / str(pid) / "ns" / "pid")


def test_process_in_container_by_cgroup_or_pid_namespace(tmp_path: Path) -> None:
    _fake_proc(tmp_path, 10, CGROUP_V1, "pid:[1]")
    _fake_proc(tmp_path, 20, "0::/\n", "pid:[7]")
    _fake_proc(tmp_path, 30, "0::/\n", "pid:[7]")
    _fake_proc(tmp_path, 40, "0::/\n", "pid:[8]")
    proc = str(tmp_path)
    assert process_in_container(10, RunningContainer(CID, 0), proc)
    assert process_in_container(20, RunningContainer(CID, 30), proc)
    assert not process_in_container(40, RunningContainer(CID, 30), proc)
    assert not process_in_container(40, RunningContainer(CID, 0), proc)
    assert not process_in_container(99, RunningContainer(CID, 30), proc)


def test_token_bucket_refills_with_time() -> None:
    now = [0.0]
    bucket = TokenBucket(RateLimit(rate=10.0, burst=2), clock=lambda: now[0])
    assert [bucket.take() for _ in range(3)] == [True, True, False]
    now[0] += 0.1
    assert bucket.take()
    assert not bucket.take()
    now[0] += 100.0
    assert [bucket.take() for _ in range(3)] == [True, True, False]


def test_socket_rate_limits_are_separate_and_forgettable() -> None:
    limits = SocketRateLimits(RateLimit(rate=0.0001, burst=1), clock=lambda: 0.0)
    limits.check("workload:a")
    with pytest.raises(TooManyRequests, match="workload:a") as refused:
        limits.check("workload:a")
    assert refused.value.http_status == 429
    limits.check("workload:b")
    limits.forget("workload:a")
    limits.check("workload:a")


DEVICE = DeviceFacts("dev1", "hub.example.net", "gw.local")


def test_module_environment_is_iot_edges() -> None:
    env = module_environment("tempSensor", "123", DEVICE, agent=False)
    assert env == {
        "IOTEDGE_WORKLOADURI": "unix:///var/run/iotedge/workload.sock",
        "IOTEDGE_MODULEID": "tempSensor",
        "IOTEDGE_DEVICEID": "dev1",
        "IOTEDGE_IOTHUBHOSTNAME": "hub.example.net",
        "IOTEDGE_GATEWAYHOSTNAME": "gw.local",
        "IOTEDGE_APIVERSION": "2020-10-10",
        "IOTEDGE_AUTHSCHEME": "sasToken",
        "IOTEDGE_MODULEGENERATIONID": "123",
    }
    agent = module_environment("edgeAgent", "1", DEVICE, agent=True)
    assert agent["IOTEDGE_MANAGEMENTURI"] == "unix:///var/run/iotedge/mgmt.sock"


def test_decorate_adds_env_and_binds_and_replaces_stale_ones() -> None:
    body = {
        "Env": ["A=1", "IOTEDGE_MODULEID=forged"],
        "HostConfig": {"Binds": ["/data:/data", "/tmp/x.sock:/var/run/iotedge/workload.sock"]},
    }
    env = module_environment("m", "9", DEVICE, agent=False)
    decorate(body, env, ModuleMounts("/run/ek/mnt/m"))
    assert "A=1" in body["Env"] and "IOTEDGE_MODULEID=m" in body["Env"]
    assert "IOTEDGE_MODULEID=forged" not in body["Env"]
    assert body["HostConfig"]["Binds"] == ["/data:/data", "/run/ek/mnt/m:/var/run/iotedge"]
    decorate(body, env, ModuleMounts("/run/ek/mnt/m"))
    assert body["HostConfig"]["Binds"] == ["/data:/data", "/run/ek/mnt/m:/var/run/iotedge"]
