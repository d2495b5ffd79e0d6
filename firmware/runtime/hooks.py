"""Module hooks: what other services do around a module's container, before it exists and after.

A hook is registered on the runtime service (`RuntimeService.add_hook`). `before_create` runs just
before the container is created, every time it is (first start, spec change, dead container): it
may prepare things on the host (a socket, an identity) and edit the create body (`Env`,
`HostConfig.Binds`/`Mounts`, `Labels`). `after_remove` runs once a module is no longer wanted and
its containers are gone. A hook that raises an `EdgekeeperError` in `before_create` stops the
create: the module shows the error as its issue and the next wake-up tries again.
"""

from __future__ import annotations

from typing import Any, Protocol

from firmware.runtime.spec import ModuleSpec


class ModuleHook(Protocol):
    async def before_create(self, spec: ModuleSpec, body: dict[str, Any]) -> None:
        """Prepare for `spec`'s container; may edit the Docker create `body` in place."""

    async def after_remove(self, module_name: str) -> None:
        """Clean up after the module `module_name` was removed from the desired set."""
