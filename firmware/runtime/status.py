"""Read models of the runtime: what the local APIs may know about modules and the engine.

The reconciler builds them (`Reconciler.statuses`, `summary`, `usage`, `engine_version`,
`running_container`) from the engine's documents and what it keeps itself (restart records,
issues, pulls under way); the API handlers only turn them into IoT Edge's JSON. The functions
here are pure: engine documents and facts in, values out.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from firmware.runtime.container import EngineVersion
from firmware.runtime.spec import DesiredStatus, ModuleSpec

# What the engine writes for a time that never happened (a container never started or exited).
NEVER = "0001-01-01T00:00:00Z"


class RuntimeStatus(enum.Enum):
    """A module's state as IoT Edge names it (`runtimeStatus.status`)."""

    RUNNING = "running"
    STOPPED = "stopped"
    FAILED = "failed"
    BACKOFF = "backoff"
    DEAD = "dead"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class ModuleStatus:
    """One wanted module: its spec, its container as the engine reports it, and our verdict."""

    spec: ModuleSpec
    agent: bool
    container_id: str  # "" while the module has no container
    image_id: str  # the container's image (sha256:...), "" while there is no container
    engine_state: str  # the engine's `State.Status`, "" while there is no container
    started_at: str | None  # engine timestamp of the last start, None if never started
    exited_at: str | None  # engine timestamp of the last exit, None while running or never run
    exit_code: int | None  # the last exit code the engine reports, if it reports one
    runtime_status: RuntimeStatus
    description: str
    restart_count: int  # consecutive failed runs (the back-off's count)

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass(frozen=True)
class RuntimeSummary:
    """The engine and the modules at a glance (`/system/status`); never fails for a lost engine."""

    socket: str
    version: EngineVersion | None  # None when the engine could not be asked
    error: str | None  # why the engine or its containers could not be read; None when fine
    modules: int  # every wanted module, the agent included
    by_status: Mapping[RuntimeStatus, int]  # in the order first seen, modules sorted by name
    degraded: str | None  # why the daemon is degraded (the watchdog gave up), if it is

    @property
    def reachable(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class ModuleUsage:
    """One running module's resource use from one engine stats sample."""

    name: str
    used_memory: int  # bytes, page cache excluded
    memory_limit: int  # bytes
    used_cpu: float  # percent of one CPU (100 * CPUs when all are busy), two decimals
    # What edgeAgent reads of the sample (IoT Edge's `docker_stats`): `name` "/<module name>"
    # and the members below, as the engine wrote them.
    engine_stats: Mapping[str, Any]


# The members of an engine stats sample in edgeAgent's `DockerStats` model.
_AGENT_STATS_MEMBERS = (
    "read",
    "preread",
    "cpu_stats",
    "precpu_stats",
    "memory_stats",
    "blkio_stats",
    "networks",
    "num_procs",
    "pids_stats",
)


@dataclass(frozen=True)
class RunningContainer:
    """The running container of a module, for the workload API's caller check."""

    container_id: str
    pid: int  # the container's main process, as the host sees it


def module_status(
    spec: ModuleSpec,
    container: Mapping[str, Any] | None,
    *,
    agent: bool,
    note: str,
    backoff_left: float,
    restart_count: int,
) -> ModuleStatus:
    """A module's status from its container's inspect document (None: no container yet).

    `note` (what is under way or what last went wrong, "" if nothing) replaces the description;
    `backoff_left` is the time before the module may be started again.
    """
    state: Mapping[str, Any] = (container or {}).get("State", {})
    started = state.get("StartedAt")
    exited = bool(state) and not state.get("Running") and state.get("FinishedAt", NEVER) != NEVER
    status, description = _verdict(spec, container, state, note, backoff_left)
    return ModuleStatus(
        spec=spec,
        agent=agent,
        container_id=(container or {}).get("Id", ""),
        image_id=(container or {}).get("Image", ""),
        engine_state=state.get("Status", ""),
        started_at=started if started and started != NEVER else None,
        exited_at=state["FinishedAt"] if exited else None,
        exit_code=state.get("ExitCode"),
        runtime_status=status,
        description=description,
        restart_count=restart_count,
    )


def _verdict(
    spec: ModuleSpec,
    container: Mapping[str, Any] | None,
    state: Mapping[str, Any],
    note: str,
    wait: float,
) -> tuple[RuntimeStatus, str]:
    if container is None:
        return RuntimeStatus.UNKNOWN, note or "no container yet"
    engine_state = state.get("Status", "")
    code = state.get("ExitCode", 0)
    if engine_state == "running":
        health = state.get("Health", {}).get("Status", "")
        return RuntimeStatus.RUNNING, note or (f"health: {health}" if health else "")
    if engine_state == "dead":
        return RuntimeStatus.DEAD, note or "the engine reports the container dead"
    if engine_state == "restarting" or (wait > 0 and spec.status is DesiredStatus.RUNNING):
        text = f"exited with code {code}; next start in {round(wait)} s"
        return RuntimeStatus.BACKOFF, note or text
    if spec.status is DesiredStatus.STOPPED or code == 0:
        return RuntimeStatus.STOPPED, note or f"exited with code {code}"
    return RuntimeStatus.FAILED, note or f"exited with code {code}"


def count_by_status(statuses: list[ModuleStatus]) -> dict[RuntimeStatus, int]:
    """How many modules are in each runtime status, in the order first seen."""
    counts: dict[RuntimeStatus, int] = {}
    for status in statuses:
        counts[status.runtime_status] = counts.get(status.runtime_status, 0) + 1
    return counts


def module_usage(name: str, stats: Mapping[str, Any]) -> ModuleUsage:
    """Memory bytes and CPU percent from one engine stats sample (`GET /containers/{id}/stats`),
    and the part of the sample edgeAgent reads, named after the module."""
    mem = stats.get("memory_stats", {})
    cache = mem.get("stats", {}).get("cache", 0) or mem.get("stats", {}).get("inactive_file", 0)
    cpu, pre = stats.get("cpu_stats", {}), stats.get("precpu_stats", {})
    used = cpu.get("cpu_usage", {}).get("total_usage", 0) - pre.get("cpu_usage", {}).get(
        "total_usage", 0
    )
    system = cpu.get("system_cpu_usage", 0) - pre.get("system_cpu_usage", 0)
    cpus = cpu.get("online_cpus") or len(cpu.get("cpu_usage", {}).get("percpu_usage") or [1])
    percent = 100.0 * used / system * cpus if system > 0 and used >= 0 else 0.0
    return ModuleUsage(
        name=name,
        used_memory=max(0, mem.get("usage", 0) - cache),
        memory_limit=mem.get("limit", 0),
        used_cpu=round(percent, 2),
        engine_stats={
            "name": f"/{name}",
            **{key: stats[key] for key in _AGENT_STATS_MEMBERS if key in stats},
        },
    )


def running_container(container: Mapping[str, Any], container_id: str) -> RunningContainer | None:
    """The container from its inspect document if it is running, else None."""
    state = container.get("State") or {}
    if not state.get("Running"):
        return None
    return RunningContainer(str(container.get("Id", container_id)), int(state.get("Pid") or 0))
