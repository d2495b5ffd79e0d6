"""`WorkloadHook`: the runtime hook that gives each module its identity and its workload socket.

Before a module's container is created it makes sure the module has an identity, opens the
module's sockets (the workload socket; the management socket too for the agent) and edits the
create body (the `IOTEDGE_*` variables, the bind mount of the module's socket directory). After a
module is removed its sockets are closed and removed; its identity is deleted, on the hub too.

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
        identity = await placement.identities.ensure(spec.name)
        agent = self._is_agent(spec.name)
        directory = await placement.sockets.open(spec.name, management=agent)
        env = module_environment(spec.name, identity.generation_id, placement.device(), agent=agent)
        decorate(body, env, ModuleMounts(socket_dir=str(directory)))

    async def after_remove(self, module_name: str) -> None:
        placement = await self._placement()
        await placement.sockets.close(module_name)
        placement.limits.forget(listener_for(module_name))
        with contextlib.suppress(IdentityNotFound):
            await placement.identities.delete(module_name)
