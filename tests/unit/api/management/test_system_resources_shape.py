"""`GET /systeminfo` and `GET /systeminfo/resources` hold what edgeAgent's deserialisers require.

edgeAgent reads them with Newtonsoft into the generated `SystemInfo`, `SystemResources` and `Disk`
classes (edge-agent/.../version_2022_08_03/generatedCode/EdgeletHttpClient.cs): a `Required.Always`
member missing or null fails the whole answer, a `long` must be a JSON integer, a `double` any
number. `docker_stats` is a string holding a JSON array that edgeAgent reads as its `DockerStats`
model (`name` "/<module>", then the engine's members) for its per-module metrics. The routes run
in-process against a reconciler supervising the in-memory `FakeEngine`."""

from __future__ import annotations

import asyncio
import datetime
import json
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from firmware.api import versions
from firmware.api.management import system
from firmware.api.management.journal import LogRing
from firmware.api.model import ApiRequest
from firmware.api.router import Router
from firmware.errors import Unavailable
from firmware.executor import BoundedExecutor
from firmware.runtime.status import module_usage
from tests.peers.fake_engine import FakeEngine
from tests.peers.waiting import wait_until_async
from tests.unit.runtime.supervising import AGENT, agent_reconciler, supervising

LONG = (-(2**63), 2**63 - 1)
INT = (-(2**31), 2**31 - 1)

# The generated classes' members: name -> (C# type, required always)
SYSTEM_INFO = {
    "osType": ("string", True),
    "architecture": ("string", True),
    "version": ("string", False),
    "provisioning": ("ProvisioningInfo", False),
    "server_version": ("string", False),
    "kernel_version": ("string", False),
    "operating_system": ("string", False),
    "cpus": ("int", False),
    "total_memory": ("long", False),
    "virtualized": ("string", False),
}
PROVISIONING_INFO = {
    "type": ("string", True),
    "dynamicReprovisioning": ("bool", True),
    "alwaysReprovisionOnStartup": ("bool", False),
}
SYSTEM_RESOURCES = {
    "host_uptime": ("long", True),
    "process_uptime": ("long", True),
    "used_cpu": ("double", True),
    "used_ram": ("long", True),
    "total_ram": ("long", True),
    "disks": ("Disk[]", True),
    "docker_stats": ("string", True),
}
DISK = {
    "name": ("string", True),
    "available_space": ("long", True),
    "total_space": ("long", True),
    "file_system": ("string", True),
    "file_type": ("string", True),
}
NESTED = {"ProvisioningInfo": PROVISIONING_INFO, "Disk": DISK}


def deserialises(document: Any, members: dict[str, tuple[str, bool]], where: str) -> None:
    """Fail as Newtonsoft would: a required member missing or null, or a value of the wrong type."""
    assert isinstance(document, dict), f"{where} is not an object"
    for name, (kind, required) in members.items():
        value = document.get(name)
        if value is None:
            assert not required, f"{where}.{name} is required"
            continue
        holds(value, kind, f"{where}.{name}")


def holds(value: Any, kind: str, where: str) -> None:
    if kind.endswith("[]"):
        assert isinstance(value, list), f"{where} is not an array"
        for n, item in enumerate(value):
            holds(item, kind[:-2], f"{where}[{n}]")
    elif kind in NESTED:
        deserialises(value, NESTED[kind], where)
    elif kind in ("long", "int"):
        low, high = LONG if kind == "long" else INT
        assert type(value) is int and low <= value <= high, f"{where} = {value!r} is no {kind}"
    elif kind == "double":
        assert type(value) in (int, float), f"{where} = {value!r} is no number"
    elif kind == "bool":
        assert type(value) is bool, f"{where} = {value!r} is no bool"
    else:
        assert type(value) is str, f"{where} = {value!r} is no string"


def agent_stats(sample: Any, where: str) -> None:
    """One `docker_stats` entry as edgeAgent's `DockerStats` reads it (every member optional,
    each of its type when there)."""
    members = {
        "name": "string",
        "read": "DateTime",
        "preread": "DateTime",
        "num_procs": "int",
        "cpu_stats": "object",
        "precpu_stats": "object",
        "memory_stats": "object",
        "pids_stats": "object",
        "blkio_stats": "object",
        "networks": "object",
    }
    assert isinstance(sample, dict), f"{where} is not an object"
    assert set(sample) <= set(members), f"{where} has more than edgeAgent reads: {set(sample)}"
    for name, kind in members.items():
        value = sample.get(name)
        if value is None:
            continue
        if kind == "DateTime":
            datetime.datetime.fromisoformat(value)  # RFC 3339, nanoseconds and all
        elif kind == "object":
            assert isinstance(value, dict), f"{where}.{name} is not an object"
        else:
            holds(value, kind, f"{where}.{name}")
    for stats in ("cpu_stats", "precpu_stats"):
        cpu = sample.get(stats) or {}
        holds(cpu.get("cpu_usage", {}).get("total_usage", 0), "double", f"{where}.{stats}")
        holds(cpu.get("system_cpu_usage", 0), "double", f"{where}.{stats}")
    for key in ("usage", "limit"):
        holds((sample.get("memory_stats") or {}).get(key, 0), "double", f"{where}.memory")


def supervised(scenario: Any) -> Any:
    """Run `scenario(router)` once the agent (a fake container that runs until stopped) runs."""

    def test(tmp_path: Path) -> None:
        reconciler = agent_reconciler(tmp_path, FakeEngine())
        config = SimpleNamespace(
            provisioning=SimpleNamespace(source="dps"),
            reprovisioning_mode=lambda: "Dynamic",
        )
        router = Router()
        table = system.routes(
            lambda: config, lambda: reconciler, no_identity, LogRing(), 0.0, BoundedExecutor().run
        )
        for method, pattern, handler in table:
            router.add(method, pattern, handler)

        async def running() -> bool:
            return [usage.name for usage in await reconciler.usage()] == [AGENT]

        async def run() -> None:
            async with supervising(reconciler):
                await wait_until_async(running, timeout_s=10, what="the agent running")
                await asyncio.wait_for(scenario(router), 30)

        asyncio.run(run())

    test.__name__ = scenario.__name__
    return test


def no_identity() -> Any:
    raise Unavailable("the identity service is not running", hint="check the daemon log")


async def get(router: Router, path: str) -> Any:
    request = ApiRequest("GET", path, query={"api-version": versions.LATEST}, body=b"")
    answer = await router.dispatch(request)
    assert answer.status == 200, answer.body
    return json.loads(answer.encoded_body())  # as it goes on the wire


@supervised
async def test_system_resources_deserialise_as_edge_agent_reads_them(router: Router) -> None:
    resources = await get(router, "/systeminfo/resources")
    deserialises(resources, SYSTEM_RESOURCES, "SystemResources")
    assert resources["disks"], "the host has at least its root file system"
    stats = json.loads(resources["docker_stats"])
    assert isinstance(stats, list) and [sample["name"] for sample in stats] == [f"/{AGENT}"]
    agent_stats(stats[0], "docker_stats[0]")
    assert stats[0]["memory_stats"]["usage"] == 6_291_456  # the engine's sample, as it was
    assert resources["modules"][0]["name"] == AGENT  # ours, kept


@supervised
async def test_system_info_deserialises_with_total_memory(router: Router) -> None:
    info = await get(router, "/systeminfo")
    deserialises(info, SYSTEM_INFO, "SystemInfo")
    assert info["total_memory"] == system.memory()[1] > 0
    assert info["provisioning"]["type"] == "dps"


def test_docker_stats_entry_is_the_engine_sample_named_after_the_module() -> None:
    sample = {  # dockerd's one-shot sample on cgroup v2, abridged
        "name": "/some-other-container-name",
        "id": "4f0c9a1d2e",
        "read": "2026-11-23T19:58:01.104377512Z",
        "preread": "0001-01-01T00:00:00Z",
        "pids_stats": {"current": 3, "limit": 4915},
        "blkio_stats": {
            "io_service_bytes_recursive": [
                {"major": 254, "minor": 0, "op": "read", "value": 4096},
                {"major": 254, "minor": 0, "op": "write", "value": 0},
            ],
            "io_serviced_recursive": None,
        },
        "num_procs": 0,
        "storage_stats": {},
        "cpu_stats": {
            "cpu_usage": {"total_usage": 3_000, "usage_in_kernelmode": 1_000},
            "system_cpu_usage": 20_000,
            "online_cpus": 2,
            "throttling_data": {"periods": 0},
        },
        "precpu_stats": {"cpu_usage": {"total_usage": 1_000}, "system_cpu_usage": 10_000},
        "memory_stats": {"usage": 10_000_000, "stats": {"inactive_file": 2_000_000}, "limit": 1e9},
        "networks": {"eth0": {"rx_bytes": 1500, "tx_bytes": 900}},
    }
    usage = module_usage("tempSensor", sample)
    expected = {key: sample[key] for key in sample if key not in ("name", "id", "storage_stats")}
    assert usage.engine_stats == {"name": "/tempSensor", **expected}
    agent_stats(json.loads(json.dumps([usage.engine_stats]))[0], "engine_stats")


@pytest.fixture
def sysfs(tmp_path: Path) -> Path:
    """A /sys with a rotating disk sda (partition sda1), a flash card mmcblk0 (mmcblk0p2), a
    device mapper volume dm-0 reporting 2, and the block device of `tmp_path`'s file system by
    number, as non-rotating."""
    root = tmp_path / "sys"
    devices = root / "devices"

    def disk(name: str, rotational: str, *partitions: str) -> Path:
        whole = devices / name
        (whole / "queue").mkdir(parents=True)
        (whole / "queue" / "rotational").write_text(rotational + "\n")
        (root / "class" / "block").mkdir(parents=True, exist_ok=True)
        (root / "class" / "block" / name).symlink_to(whole)
        for partition in partitions:
            (whole / partition).mkdir()
            (whole / partition / "partition").write_text("1\n")
            (root / "class" / "block" / partition).symlink_to(whole / partition)
        return whole

    disk("sda", "1", "sda1")
    disk("mmcblk0", "0", "mmcblk0p2")
    disk("dm-0", "2")
    number = os.stat(tmp_path).st_dev
    (root / "dev" / "block").mkdir(parents=True)
    (root / "dev" / "block" / f"{os.major(number)}:{os.minor(number)}").symlink_to(disk("vdz", "0"))
    return root


@pytest.mark.parametrize(
    ("device", "kind"),
    [
        ("/dev/sda1", "HDD"),
        ("/dev/sda", "HDD"),
        ("/dev/mmcblk0p2", "SSD"),
        ("/dev/dm-0", "Unknown(2)"),
        ("overlay", "Unknown(-1)"),
    ],
)
def test_disk_file_type_as_aziot_edged_names_it(sysfs: Path, device: str, kind: str) -> None:
    assert system.disk_kind(device, "/nonexistent/mount", sysfs) == kind


def test_a_device_name_that_is_no_file_is_found_by_the_mount_number(
    sysfs: Path, tmp_path: Path
) -> None:
    assert system.disk_kind("/dev/root", str(tmp_path), sysfs) == "SSD"
    assert system.disk_kind("/dev/root", "/nonexistent/mount", sysfs) == "Unknown(-1)"


def test_disks_carry_the_file_type(sysfs: Path, tmp_path: Path) -> None:
    mounts = tmp_path / "mounts"
    mounts.write_text(
        f"/dev/sda1 {tmp_path} ext4 rw 0 0\nproc /proc proc rw 0 0\n"
        f"overlay {tmp_path} overlay rw 0 0\n"
    )
    found = system.disks(mounts, sysfs)
    assert [(d["name"], d["file_type"]) for d in found] == [
        ("/dev/sda1", "HDD"),
        ("overlay", "SSD"),  # by the mount point's device: tmp_path's, here
    ]
    for n, entry in enumerate(found):
        deserialises(entry, DISK, f"disks[{n}]")
