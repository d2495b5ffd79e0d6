"""System routes: IoT Edge's `GET /systeminfo`, `GET /systeminfo/resources` and
`POST /device/reprovision`, and our `GET /system/status` and `GET /system/logs`.

`/systeminfo` answers IoT Edge's `SystemInfo` fields (osType, architecture, version,
provisioning, server_version, kernel_version, operating_system, cpus, total_memory, virtualized).
`/systeminfo/resources` answers IoT Edge's `SystemResources`: host uptime, the daemon's uptime, CPU
and memory use of the host, its disks (with aziot-edged's `file_type`: HDD, SSD or Unknown(n)),
and `docker_stats`, the JSON text of the modules' engine stats samples that edgeAgent turns into
its per-module metrics; and ours, per module the memory and CPU its container uses.
`/system/status` never fails for an unreachable engine: it reports it, with the modules' summary
and why the daemon is degraded, if it is. Engine and module facts come from the runtime's read
models (`firmware.runtime.status`); the host's from /proc.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from firmware import __version__
from firmware.api.management.journal import LogRing
from firmware.api.model import ApiRequest, ApiResponse
from firmware.api.router import RouteTable
from firmware.config.schema import Config
from firmware.errors import BadRequest, Unavailable
from firmware.executor import RunBlocking
from firmware.identity.daemon import IdentityService
from firmware.runtime.reconciler import Reconciler
from firmware.runtime.status import ModuleUsage, RuntimeSummary

PROC = Path("/proc")
SYSFS = Path("/sys")
_MOUNT_TYPES = frozenset({"ext2", "ext3", "ext4", "xfs", "btrfs", "vfat", "f2fs", "overlay"})


def os_release(path: Path = Path("/etc/os-release")) -> str:
    try:
        text = path.read_text()
    except OSError:
        return platform.system()
    for line in text.splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.partition("=")[2].strip().strip('"')
    return platform.system()


def virtualized(cpuinfo: Path = PROC / "cpuinfo") -> str:
    try:
        flags = cpuinfo.read_text()
    except OSError:
        return "unknown"
    return "yes" if " hypervisor" in flags else "no"


def memory(meminfo: Path = PROC / "meminfo") -> tuple[int, int]:
    """(used, total) bytes of RAM."""
    values: dict[str, int] = {}
    for line in meminfo.read_text().splitlines():
        key, _, rest = line.partition(":")
        values[key] = int(rest.split()[0]) * 1024
    total = values.get("MemTotal", 0)
    return total - values.get("MemAvailable", values.get("MemFree", 0)), total


def cpu_times(stat: Path = PROC / "stat") -> tuple[int, int]:
    """(busy, total) jiffies since boot over all CPUs."""
    numbers = [int(v) for v in stat.read_text().splitlines()[0].split()[1:]]
    idle = numbers[3] + (numbers[4] if len(numbers) > 4 else 0)
    return sum(numbers) - idle, sum(numbers)


def disk_kind(device: str, mount_point: str, sysfs: Path = SYSFS) -> str:
    """What aziot-edged reports as a disk's `file_type`: "HDD" or "SSD" from the kernel's
    `queue/rotational` for the device (for its whole disk, if it is a partition), "Unknown(n)" for
    any other value n, "Unknown(-1)" when the kernel tells nothing (overlay, tmpfs). The device is
    found by name, else by the mount point's device number (a `/dev/root` that is no file)."""
    name = os.path.basename(os.path.realpath(device)) if device.startswith("/") else device
    entries = [sysfs / "class" / "block" / name]
    with contextlib.suppress(OSError):
        number = os.stat(mount_point).st_dev
        entries.append(sysfs / "dev" / "block" / f"{os.major(number)}:{os.minor(number)}")
    for entry in entries:
        if (entry / "partition").exists():
            entry = entry.resolve().parent
        try:
            rotational = int((entry / "queue" / "rotational").read_text())
        except (OSError, ValueError):
            continue
        return {1: "HDD", 0: "SSD"}.get(rotational, f"Unknown({rotational})")
    return "Unknown(-1)"


def disks(mounts: Path = PROC / "mounts", sysfs: Path = SYSFS) -> list[dict[str, Any]]:
    found, seen = [], set()
    for line in mounts.read_text().splitlines():
        device, point, kind, *_ = line.split()
        if kind not in _MOUNT_TYPES or device in seen:
            continue
        seen.add(device)
        try:
            usage = os.statvfs(point)
        except OSError:
            continue
        found.append(
            {
                "name": device,
                "mount_point": point,
                "file_system": kind,
                "file_type": disk_kind(device, point, sysfs),
                "available_space": usage.f_bavail * usage.f_frsize,
                "total_space": usage.f_blocks * usage.f_frsize,
            }
        )
    return found


def usage_document(usage: ModuleUsage) -> dict[str, Any]:
    return {
        "name": usage.name,
        "used_memory": usage.used_memory,
        "memory_limit": usage.memory_limit,
        "used_cpu": usage.used_cpu,
    }


def status_document(summary: RuntimeSummary) -> dict[str, Any]:
    """`/system/status`: the engine, the modules counted by runtime status, why degraded."""
    engine: dict[str, Any] = {"socket": summary.socket, "reachable": summary.reachable}
    if summary.version is not None:
        engine.update(version=summary.version.version, api_version=summary.version.api_version)
    if summary.error is not None:
        engine["error"] = summary.error
    counts = {status.value: count for status, count in summary.by_status.items()}
    return {
        "engine": engine,
        "modules": {"total": summary.modules, **counts},
        "degraded": summary.degraded,
    }


def provisioning_document(identity: Callable[[], IdentityService]) -> dict[str, Any]:
    """The provisioning state for status answers: source, state, hub, device id, last result
    and its time, next retry; `{"state": "not running"}` without an identity service."""
    try:
        service = identity()
    except Unavailable:
        return {"state": "not running"}
    provisioner = service.provisioner
    if provisioner is None:
        return {"state": "starting"}
    return provisioner.state.document()


def routes(
    config: Callable[[], Config],
    current: Callable[[], Reconciler],
    identity: Callable[[], IdentityService],
    ring: LogRing,
    started_at: float,
    run: RunBlocking,
) -> RouteTable:
    """The system routes; `config()`, `current()` and `identity()` give the config, the
    reconciler and the identity service at request time, `ring` the daemon's last log lines,
    `started_at` when the daemon started; `run` runs the disks' statvfs and sysfs reads in the
    executor (a hung network mount must not stop the loop)."""

    async def system_info(request: ApiRequest) -> ApiResponse:
        engine = await current().engine_version()
        provisioning = config().provisioning
        mode = config().reprovisioning_mode()
        return ApiResponse(
            200,
            {
                "osType": engine.os or platform.system().lower(),
                "architecture": engine.arch or platform.machine(),
                "version": __version__,
                "provisioning": {
                    "type": provisioning.source,
                    "dynamicReprovisioning": mode == "Dynamic",
                    "alwaysReprovisionOnStartup": mode == "AlwaysOnStartup",
                },
                "server_version": engine.version,
                "kernel_version": platform.release(),
                "operating_system": os_release(),
                "cpus": os.cpu_count() or 1,
                "total_memory": memory()[1],
                "virtualized": virtualized(),
            },
        )

    async def resources(request: ApiRequest) -> ApiResponse:
        reconciler = current()
        busy0, total0 = cpu_times()
        modules = await reconciler.usage()
        if not modules:
            await asyncio.sleep(0.2)  # a window for the host's CPU sample
        busy1, total1 = cpu_times()
        used_ram, total_ram = memory()
        uptime = float((PROC / "uptime").read_text().split()[0])
        return ApiResponse(
            200,
            {
                "host_uptime": int(uptime),
                "process_uptime": int(time.time() - started_at),
                "used_cpu": round(
                    100.0 * (busy1 - busy0) / (total1 - total0) if total1 > total0 else 0.0, 2
                ),
                "used_ram": used_ram,
                "total_ram": total_ram,
                "disks": await run(disks),
                "docker_stats": json.dumps([usage.engine_stats for usage in modules]),
                "modules": [usage_document(usage) for usage in modules],
            },
        )

    async def reprovision(request: ApiRequest) -> ApiResponse:
        device = await identity().reprovision("requested on the management API")
        return ApiResponse(200, {"hub": device.hub, "deviceId": device.device_id})

    async def system_status(request: ApiRequest) -> ApiResponse:
        document = status_document(await current().summary())
        document["provisioning"] = provisioning_document(identity)
        return ApiResponse(200, document)

    async def system_logs(request: ApiRequest) -> ApiResponse:
        count = request.query.get("lines", "100")
        if not count.isdigit():
            raise BadRequest(f"query parameter 'lines' is {count!r}; use a number")
        return ApiResponse(200, {"lines": ring.lines(int(count))})

    return [
        ("GET", "/systeminfo", system_info),
        ("GET", "/systeminfo/resources", resources),
        ("POST", "/device/reprovision", reprovision),
        ("GET", "/system/status", system_status),
        ("GET", "/system/logs", system_logs),
    ]
