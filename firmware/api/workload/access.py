"""Who may act as which module on the workload API.

On a module's own socket (listener "workload:<module>") a request may act only as that module.
On the shared workload socket the caller's pid (SO_PEERCRED) must belong to the module's
container: the container id appears in `/proc/<pid>/cgroup`, or the pid lives in the same pid
namespace as the container's init process. Anything else is refused with 403 naming why.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable

from firmware.api.model import ApiRequest
from firmware.api.workload.errors import NotThisModule
from firmware.executor import RunBlocking
from firmware.runtime.status import RunningContainer

# module name -> its running container, or None when it has none.
ContainerLookup = Callable[[str], Awaitable[RunningContainer | None]]


def cgroup_names_container(cgroup_text: str, container_id: str) -> bool:
    """True if a `/proc/PID/cgroup` text places the process in `container_id`'s cgroup."""
    return any(container_id in line.split(":", 2)[-1] for line in cgroup_text.splitlines())


def same_pid_namespace(pid: int, other_pid: int, proc: str = "/proc") -> bool:
    try:
        return os.readlink(f"{proc}/{pid}/ns/pid") == os.readlink(f"{proc}/{other_pid}/ns/pid")
    except OSError:
        return False


def process_in_container(pid: int, container: RunningContainer, proc: str = "/proc") -> bool:
    """Blocking (reads /proc): True if `pid` belongs to `container`."""
    try:
        with open(f"{proc}/{pid}/cgroup", encoding="ascii", errors="replace") as file:
            if cgroup_names_container(file.read(), container.container_id):
                return True
    except OSError:
        return False
    return container.pid > 0 and same_pid_namespace(pid, container.pid, proc)


class WorkloadAccess:
    """Decides whether a request may act as a module."""

    def __init__(self, containers: ContainerLookup | None, run_blocking: RunBlocking):
        self._containers = containers
        self._run_blocking = run_blocking

    async def check(self, request: ApiRequest, module: str) -> None:
        """Return if `request` may act as `module`; `NotThisModule` (403) otherwise."""
        scope = request.listener_scope
        if scope is not None:
            if scope != module:
                raise NotThisModule(
                    f"this socket belongs to module {scope!r}; it cannot act as module {module!r}",
                    hint=f"call /modules/{scope}/... (the module id in IOTEDGE_MODULEID)",
                )
            return
        if request.listener_kind == "console":
            return
        peer = request.peer
        if peer is None:
            raise NotThisModule(
                f"the caller's process is unknown, so it cannot act as module {module!r}",
                hint="call the module's own workload socket (IOTEDGE_WORKLOADURI)",
            )
        container = await self._containers(module) if self._containers is not None else None
        if container is None:
            raise NotThisModule(
                f"module {module!r} has no running container, so pid {peer.pid} cannot act as it",
                hint="only a module's own container may use its identity",
            )
        if not await self._run_blocking(process_in_container, peer.pid, container):
            raise NotThisModule(
                f"pid {peer.pid} is not in the container of module {module!r}",
                hint="a module may only act as itself; call the module's own workload socket",
            )
