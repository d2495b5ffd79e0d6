"""System routes: IoT Edge's `GET /systeminfo`, `GET /systeminfo/resources` and
`POST /device/reprovision`, and our `GET /system/status` and `GET /system/logs`.

`/systeminfo` answers IoT Edge's `SystemInfo` fields (osType, architecture, version,
provisioning, server_version, kernel_version, operating_system, cpus, virtualized).
`/systeminfo/resources` answers host uptime, the daemon's uptime, CPU and memory use of the host,
its disks, and per module the memory and CPU its container uses (from container stats).
`/system/status` never fails for an unreachable engine: it reports it, with the modules' summary
and why the daemon is degraded, if it is.
"""

from __future__ import annotations

import asyncio
import os
import platform
import time
from pathlib import Path
from typing import Any

from firmware.api.management.journal import LogRing
from firmware.api.management.modules import module_details
from firmware.api.model import ApiRequest, ApiResponse
from firmware.errors import BadRequest, EdgekeeperError, NotSupported
from firmware.runtime.spec import MODULE_LABEL, OWNER_LABEL

PROC = Path("/proc")
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


def disks(mounts: Path = PROC / "mounts") -> list[dict[str, Any]]:
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
                "available_space": usage.f_bavail * usage.f_frsize,
                "total_space": usage.f_blocks * usage.f_frsize,
            }
        )
    return found


def container_usage(stats: dict[str, Any]) -> dict[str, Any]:
    """Memory bytes and CPU percent (of all CPUs = 100 * cpus) from one stats sample."""
    mem = stats.get("memory_stats", {})
    cache = mem.get("stats", {}).get("cache", 0) or mem.get("stats", {}).get("inactive_file", 0)
    cpu, pre = stats.get("cpu_stats", {}), stats.get("precpu_stats", {})
    used = cpu.get("cpu_usage", {}).get("total_usage", 0) - pre.get("cpu_usage", {}).get(
        "total_usage", 0
    )
    system = cpu.get("system_cpu_usage", 0) - pre.get("system_cpu_usage", 0)
    cpus = cpu.get("online_cpus") or len(cpu.get("cpu_usage", {}).get("percpu_usage") or [1])
    percent = 100.0 * used / system * cpus if system > 0 and used >= 0 else 0.0
    return {
        "used_memory": max(0, mem.get("usage", 0) - cache),
        "memory_limit": mem.get("limit", 0),
        "used_cpu": round(percent, 2),
    }


def routes(ctx: Any, current: Any, ring: LogRing, started_at: float) -> list[tuple[str, str, Any]]:
    async def system_info(request: ApiRequest) -> ApiResponse:
        from firmware import __version__

        engine = await current().engine.version()
        provisioning = ctx.config.provisioning
        mode = ctx.config.auto_reprovisioning_mode
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
                "virtualized": virtualized(),
            },
        )

    async def resources(request: ApiRequest) -> ApiResponse:
        reconciler = current()
        containers = await reconciler.engine.list_containers({OWNER_LABEL: reconciler.owner})
        running = [c for c in containers if c.state == "running"]
        busy0, total0 = cpu_times()
        samples = await asyncio.gather(
            *(reconciler.engine.stats(c.container_id) for c in running), return_exceptions=True
        )
        if not running:
            await asyncio.sleep(0.2)
        busy1, total1 = cpu_times()
        used_ram, total_ram = memory()
        modules = []
        for container, sample in zip(running, samples, strict=True):
            if isinstance(sample, EdgekeeperError):
                continue
            if isinstance(sample, BaseException):
                raise sample
            usage = container_usage(sample)
            modules.append({"name": container.labels.get(MODULE_LABEL, container.name), **usage})
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
                "disks": disks(),
                "modules": sorted(modules, key=lambda m: m["name"]),
            },
        )

    async def reprovision(request: ApiRequest) -> ApiResponse:
        raise NotSupported(
            "reprovisioning is not available in this build: the provisioning service has not "
            "landed yet",
            hint="restart the daemon to provision again from [provisioning]",
        )

    async def system_status(request: ApiRequest) -> ApiResponse:
        from firmware.runtime.service import runtime_service

        reconciler = runtime_service(ctx).current()
        engine: dict[str, Any] = {"socket": reconciler.engine.socket_path}
        summary: dict[str, int] = {}
        try:
            version = await reconciler.engine.version()
            engine.update(reachable=True, version=version.version, api_version=version.api_version)
            for module in await module_details(reconciler):
                state = module["status"]["runtimeStatus"]["status"]
                summary[state] = summary.get(state, 0) + 1
        except EdgekeeperError as error:
            engine.update(reachable=False, error=error.render())
        return ApiResponse(
            200,
            {
                "engine": engine,
                "modules": {"total": len(reconciler.modules()), **summary},
                "degraded": reconciler.degraded,
            },
        )

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
