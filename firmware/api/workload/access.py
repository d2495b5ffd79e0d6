"""Who may act as which module on the workload API.

On a module's own socket (listener "workload:<module>") a request may act only as that module.
On the shared workload socket (off unless `[listen] shared_workload_socket`) the caller is the
process that connected (SO_PEERCRED), pinned by the pidfd its connection holds. It may act as a
module only if its `/proc/<pid>/cgroup` is exactly that of the container's init process, that
cgroup is the container's own (its path names the container id), and the pidfd shows the process
still running after /proc was read, so the pid was not handed to another process meanwhile. A host
process, one in another container, or one sharing only a pid namespace is refused (403 naming why).
"""

from __future__ import annotations

import select
from collections.abc import Awaitable, Callable

from firmware.api.model import ApiRequest, PeerCredentials
from firmware.api.workload.errors import NotThisModule
from firmware.executor import RunBlocking
from firmware.runtime.status import RunningContainer

# module name -> its running container, or None when it has none.
ContainerLookup = Callable[[str], Awaitable[RunningContainer | None]]


def cgroup_names_container(cgroup_text: str, container_id: str) -> bool:
    """True if a `/proc/PID/cgroup` text places the process in a cgroup of `container_id`'s own:
    one whose last path component is the id (`/docker/<id>`) or a scope named after it
    (`/system.slice/docker-<id>.scope`)."""
    if not container_id:
        return False
    for line in cgroup_text.splitlines():
        leaf = line.split(":", 2)[-1].rstrip("/").rpartition("/")[2]
        if container_id in (leaf, leaf.removesuffix(".scope").rpartition("-")[2]):
            return True
    return False


def process_running(pidfd: int) -> bool:
    """True while the process a pidfd refers to has not exited (the pidfd turns readable when it
    does; a closed descriptor counts as exited)."""
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    return not poller.poll(0)


def process_in_container(
    peer: PeerCredentials, container: RunningContainer, proc: str = "/proc"
) -> bool:
    """Blocking (reads /proc): True if the process `peer` pins belongs to `container`."""
    if peer.pidfd is None or peer.pid <= 0 or container.pid <= 0:
        return False
    caller = _cgroup(proc, peer.pid)
    init = _cgroup(proc, container.pid)
    if caller is None or init is None or caller != init:
        return False
    return cgroup_names_container(init, container.container_id) and process_running(peer.pidfd)


def _cgroup(proc: str, pid: int) -> str | None:
    try:
        with open(f"{proc}/{pid}/cgroup", encoding="ascii", errors="replace") as file:
            return file.read()
    except OSError:
        return None


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
        if peer is None or peer.pidfd is None:
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
        if not await self._run_blocking(process_in_container, peer, container):
            raise NotThisModule(
                f"pid {peer.pid} is not in the container of module {module!r}",
                hint="a module may only act as itself; call the module's own workload socket",
            )
