"""`WorkloadHook`: the runtime hook that gives each module its identity and its workload socket.

Before a module's container is created it makes sure the module has an identity, opens the
module's socket and edits the create body (the `IOTEDGE_*` variables, the socket bind mount, the
management socket for the agent). After a module is removed its socket is closed and its file
removed; the identity stays until deleted on the management API (as IoT Edge's agent does).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from firmware.api.workload.environment import (
    DeviceFacts,
    ModuleMounts,
    decorate,
    module_environment,
)
from firmware.api.workload.sockets import ModuleSockets, listener_for


class WorkloadHook:
    """`firmware.runtime.hooks.ModuleHook` for the workload API; `identities()` waits until the
    module identities are ready and returns them."""

    def __init__(
        self,
        identities: Callable[[], Awaitable[Any]],
        sockets: ModuleSockets,
        device: DeviceFacts,
        *,
        is_agent: Callable[[str], bool],
        management_socket: str | None,
        forget_limits: Callable[[str], None] = lambda listener: None,
    ) -> None:
        self._identities = identities
        self._sockets = sockets
        self._device = device
        self._is_agent = is_agent
        self._management_socket = management_socket
        self._forget_limits = forget_limits
        # Modules whose container this daemon created (so its binds name the current sockets).
        self.prepared: set[str] = set()

    async def before_create(self, spec: Any, body: dict[str, Any]) -> None:
        identity = await (await self._identities()).ensure(spec.name)
        path = await self._sockets.open(spec.name)
        agent = self._is_agent(spec.name)
        env = module_environment(spec.name, identity.generation_id, self._device, agent=agent)
        mounts = ModuleMounts(
            workload_socket=str(path),
            management_socket=self._management_socket if agent else None,
        )
        decorate(body, env, mounts)
        self.prepared.add(spec.name)

    async def after_remove(self, module_name: str) -> None:
        self.prepared.discard(module_name)
        await self._sockets.close(module_name)
        self._forget_limits(listener_for(module_name))
