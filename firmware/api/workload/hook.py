"""`WorkloadHook`: the runtime hook that gives each module its identity and its workload socket.

Before a module's container is created it makes sure the module has an identity (`$edgeAgent`
for the agent, `$edgeHub` for edgeHub: `firmware.identity.model`), opens the module's sockets (the
workload socket; the management socket too for the agent) and edits the create body (the
`IOTEDGE_*` variables, the bind mount of the module's socket directory). After a module is removed
its sockets are closed and removed; its identity is deleted, on the hub too, unless it is a
system identity.

The hook is registered once and outlives restarts of the workload service: it asks for the
current `WorkloadPlacement` (identities, sockets, device facts) on every call.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from firmware.api.workload.environment import (
    DeviceFacts,
    ModuleMounts,
    decorate,
    module_environment,
)
from firmware.api.workload.ratelimit import SocketRateLimits
from firmware.api.workload.sockets import ModuleSockets, listener_for
from firmware.identity.errors import IdentityNotFound
from firmware.identity.model import identity_of_module, is_system_identity
from firmware.identity.modules import ModuleIdentities
from firmware.runtime.spec import ModuleSpec


@dataclass(frozen=True)
class WorkloadPlacement:
    """What the hook needs from the running workload service."""

    identities: ModuleIdentities
    sockets: ModuleSockets
    device: Callable[[], DeviceFacts]
    limits: SocketRateLimits


class WorkloadHook:
    """`firmware.runtime.hooks.ModuleHook` for the workload API; `placement()` waits (bounded)
    until the workload service is ready and returns what it serves with."""

    def __init__(
        self,
        placement: Callable[[], Awaitable[WorkloadPlacement]],
        *,
        is_agent: Callable[[str], bool],
    ) -> None:
        self._placement = placement
        self._is_agent = is_agent

    async def before_create(self, spec: ModuleSpec, body: dict[str, Any]) -> None:
        placement = await self._placement()
        agent = self._is_agent(spec.name)
        module_id = identity_of_module(spec.name, agent=agent)
        identity = await placement.identities.ensure(module_id)
        directory = await placement.sockets.open(spec.name, module_id, management=agent)
        env = module_environment(
            module_id,
            identity.generation_id,
            placement.device(),
            agent=agent,
            sockets_dir=str(placement.sockets.directory),
        )
        decorate(body, env, ModuleMounts(socket_dir=str(directory)))

    async def after_remove(self, module_name: str) -> None:
        """Close the module's sockets and delete its identity (on the hub too), unless it is a
        system identity: `$edgeHub` stays with the device, as on IoT Edge."""
        placement = await self._placement()
        module_id = identity_of_module(module_name, agent=self._is_agent(module_name))
        await placement.sockets.close(module_name)
        placement.limits.forget(listener_for(module_id))
        if is_system_identity(module_id):
            return
        with contextlib.suppress(IdentityNotFound):
            await placement.identities.delete(module_id)
