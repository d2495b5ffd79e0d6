"""The workload API's pure parts: token buckets, the module environment and binds. (The caller
check is tests/unit/api/workload/test_workload_access.py.)"""

from __future__ import annotations

import pytest

from firmware.api.workload.environment import (
    DeviceFacts,
    ModuleMounts,
    decorate,
    module_environment,
)
from firmware.api.workload.ratelimit import RateLimit, SocketRateLimits, TokenBucket
from firmware.errors import TooManyRequests


def test_token_bucket_refills_with_time() -> None:
    now = [0.0]
    bucket = TokenBucket(RateLimit(rate=10.0, burst=2), clock=lambda: now[0])
    assert [(bucket.take_or_wait() == 0.0) for _ in range(3)] == [True, True, False]
    now[0] += 0.1
    assert bucket.take_or_wait() == 0.0
    assert bucket.take_or_wait() > 0.0
    now[0] += 100.0
    assert [(bucket.take_or_wait() == 0.0) for _ in range(3)] == [True, True, False]


def test_socket_rate_limits_are_separate_and_forgettable() -> None:
    limits = SocketRateLimits(RateLimit(rate=0.0001, burst=1), clock=lambda: 0.0)
    limits.check("workload:a")
    with pytest.raises(TooManyRequests, match="workload:a") as refused:
        limits.check("workload:a")
    assert refused.value.http_status == 429
    limits.check("workload:b")
    limits.forget("workload:a")
    limits.check("workload:a")


def test_socket_rate_limit_follows_the_setting_now_in_force() -> None:
    now = [0.0]
    setting = [RateLimit(rate=1.0, burst=2)]
    limits = SocketRateLimits(lambda: setting[0], clock=lambda: now[0])
    limits.check("workload:a")
    limits.check("workload:a")
    with pytest.raises(TooManyRequests, match="rate limit of 1 requests/s") as refused:
        limits.check("workload:a")
    assert refused.value.retry_after_s == pytest.approx(1.0)
    setting[0] = RateLimit(rate=1000.0, burst=200)  # a reloaded config raised it
    for _ in range(200):
        limits.check("workload:a")
    with pytest.raises(TooManyRequests, match="rate limit of 1000 requests/s"):
        limits.check("workload:a")
    now[0] += 0.001
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
        "IOTEDGE_APIVERSION": "2022-08-03",
        "IOTEDGE_AUTHSCHEME": "sasToken",
        "IOTEDGE_MODULEGENERATIONID": "123",
    }


def test_the_agent_gets_what_aziot_edged_gives_it() -> None:
    # aziot-edged's agent_env (edgelet/aziot-edged/src/watchdog.rs): no gateway of its own, the
    # device host name, the management socket, Mode
    agent = module_environment("$edgeAgent", "1", DEVICE, agent=True, sockets_dir="/run/ek/mnt")
    assert agent["IOTEDGE_MODULEID"] == "$edgeAgent"
    assert agent["IOTEDGE_MANAGEMENTURI"] == "unix:///var/run/iotedge/mgmt.sock"
    assert agent["EdgeDeviceHostName"] == "gw.local"
    assert agent["Mode"] == "iotedged"
    assert agent["NetworkId"] == "azure-iot-edge"
    assert agent["IOTEDGE_WORKLOADLISTEN_MNTURI"] == "unix:///run/ek/mnt"
    assert agent["IOTEDGE_APIVERSION"] == "2022-08-03"
    assert "IOTEDGE_GATEWAYHOSTNAME" not in agent


def test_edge_hub_connects_upstream_and_others_through_it() -> None:
    # edgeAgent's CreateOrUpdateCommand.GetEnvVars: $edgeHub gets EdgeDeviceHostName (and the
    # parent as its gateway), the other modules the gateway and IOTEDGE_PARENTHOSTNAME
    nested = DeviceFacts("dev1", "hub.example.net", "gw.local", parent_hostname="parent.local")
    hub = module_environment("$edgeHub", "2", nested, agent=False)
    assert hub["EdgeDeviceHostName"] == "gw.local"
    assert hub["IOTEDGE_GATEWAYHOSTNAME"] == "parent.local"
    assert "IOTEDGE_MANAGEMENTURI" not in hub and "Mode" not in hub
    other = module_environment("filter", "3", nested, agent=False)
    assert other["IOTEDGE_GATEWAYHOSTNAME"] == "gw.local"
    assert other["IOTEDGE_PARENTHOSTNAME"] == "parent.local"
    assert "EdgeDeviceHostName" not in other


def test_decorate_adds_env_and_binds_and_replaces_stale_ones() -> None:
    body = {
        "Env": ["A=1", "IOTEDGE_MODULEID=forged"],
        "HostConfig": {"Binds": ["/data:/data", "/tmp/x.sock:/var/run/iotedge/workload.sock"]},
    }
    env = module_environment("m", "9", DEVICE, agent=False)
    decorate(body, env, ModuleMounts("/run/ek/mnt/m"))
    assert "A=1" in body["Env"] and "IOTEDGE_MODULEID=m" in body["Env"]
    assert "IOTEDGE_MODULEID=forged" not in body["Env"]
    assert body["HostConfig"]["Binds"] == ["/data:/data", "/run/ek/mnt/m:/var/run/iotedge:ro"]
    decorate(body, env, ModuleMounts("/run/ek/mnt/m"))
    assert body["HostConfig"]["Binds"] == ["/data:/data", "/run/ek/mnt/m:/var/run/iotedge:ro"]


def test_a_modules_own_bind_over_its_socket_directory_is_replaced_by_the_read_only_one() -> None:
    body = {
        "HostConfig": {
            "Binds": ["/tmp/mine:/var/run/iotedge:rw", "/tmp/m.sock:/var/run/iotedge/mgmt.sock"]
        }
    }
    decorate(body, module_environment("m", "9", DEVICE, agent=True), ModuleMounts("/run/ek/mnt/m"))
    assert body["HostConfig"]["Binds"] == ["/run/ek/mnt/m:/var/run/iotedge:ro"]
