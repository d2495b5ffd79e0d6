"""Daemon service "workload": the module sockets and the shared socket.

`run` waits for the identity service (the device identity and the module identities), opens the
sockets of the modules the runtime already runs (adopted after a daemon
restart: their containers mount the socket directory, so they reach the new sockets without a
restart) and, only when `[listen] shared_workload_socket` is set, serves the shared workload
socket `[listen] workload_uri` (callers identified by their container). The module hook
(`WorkloadHook`) asks `placement()` for what it needs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from firmware.api.router import Router
from firmware.api.server import ApiSocketServer
from firmware.api.workload.environment import DeviceFacts
from firmware.api.workload.hook import WorkloadPlacement
from firmware.api.workload.ratelimit import SocketRateLimits
from firmware.api.workload.sockets import ModuleSockets
from firmware.config.schema import Config
from firmware.errors import EdgekeeperError, Unavailable
from firmware.executor import BoundedExecutor
from firmware.identity.device import DeviceIdentity
from firmware.identity.errors import IdentityNotFound
from firmware.identity.model import DEFAULT_MANAGER, identity_of_module
from firmware.identity.modules import ModuleIdentities
from firmware.logs import get_logger
from firmware.runtime.reconciler import Reconciler
from firmware.store.state import StateStore

log = get_logger("workload")

READY_WAIT_S = 60.0


class WorkloadService:
    """The workload API's sockets and the module identities under the daemon's supervisor."""

    name = "workload"

    def __init__(
        self,
        config: Config,
        store: StateStore,
        executor: BoundedExecutor,
        router: Router,
        *,
        identities: Callable[[], Awaitable[ModuleIdentities]],
        device: Callable[[], DeviceIdentity],
        reconciler: Callable[[], Reconciler | None],
        limits: SocketRateLimits,
    ) -> None:
        self._config = config
        self._store = store
        self._executor = executor
        self._router = router
        self._identities = identities
        self._device = device
        self._reconciler = reconciler
        self._limits = limits
        self.identities: ModuleIdentities | None = None
        self.sockets: ModuleSockets | None = None
        self._placement: WorkloadPlacement | None = None
        self._ready = asyncio.Event()

    async def prepare(self) -> None:
        """Nothing to acquire: identities need the key service, which starts in `run`."""

    async def run(self) -> None:
        identities = await self._identities()
        config = self._config
        listen = config.listen
        sockets = ModuleSockets(Path(config.paths.run_dir), self._router)
        shared = None
        if listen.shared_workload_socket:
            shared = ApiSocketServer(
                listen.workload_uri,
                self._router,
                listener="workload",
                mode=listen.socket_mode,
                group=listen.socket_group,
            )
            await shared.start()
        self.identities, self.sockets = identities, sockets
        self._placement = WorkloadPlacement(
            identities, sockets, lambda: device_facts(config, self._device()), self._limits
        )
        try:
            self._ready.set()
            await self._join_runtime(identities, sockets)
            log.info(
                "workload API ready: module sockets in %s, shared socket %s",
                sockets.directory,
                listen.workload_uri if shared is not None else "off",
            )
            if shared is None:
                await asyncio.Event().wait()  # until the service is stopped
            else:
                await shared.serve_forever()
        finally:
            self._ready.clear()
            if shared is not None:
                await shared.close()
            await sockets.close_all()

    async def placement(self) -> WorkloadPlacement:
        """What the module hook needs, once ready; `Unavailable` after `READY_WAIT_S`."""
        try:
            async with asyncio.timeout(READY_WAIT_S):
                await self._ready.wait()
        except TimeoutError:
            raise Unavailable(
                f"the workload service is not ready after {READY_WAIT_S:g} s",
                hint="see `edgekeeper status`: it waits for the device identity",
            ) from None
        assert self._placement is not None
        return self._placement

    def current(self) -> ModuleIdentities:
        """The module identities when ready; `Unavailable` otherwise (never waits)."""
        if self.identities is None or not self._ready.is_set():
            raise Unavailable(
                "module identities are not ready (waiting for the device identity)",
                hint="see `edgekeeper status` and the daemon log",
            )
        return self.identities

    def describe(self) -> dict[str, object]:
        if self.identities is None or self.sockets is None or not self._ready.is_set():
            return {"ready": False}
        return {
            "ready": True,
            "identities": len(self.identities.list()),
            "sockets": len(self.sockets.status()),
        }

    async def _join_runtime(self, identities: ModuleIdentities, sockets: ModuleSockets) -> None:
        """Open the sockets of the modules the runtime already runs. A system module that still
        has the identity named after it (what versions before IoT Edge's naming made) loses it,
        and every module is created again so the agent and edgeHub act as `$edgeAgent` and
        `$edgeHub` from now on."""
        reconciler = self._reconciler()
        if reconciler is None:
            log.info("no runtime service: no module sockets to open")
            return
        await reconciler.loaded()
        renamed = []
        for name in reconciler.modules():
            agent = reconciler.is_agent(name)
            module_id = identity_of_module(name, agent=agent)
            try:
                if module_id != name and await self._drop_named_identity(identities, name):
                    renamed.append(name)
                await identities.ensure(module_id)
                await sockets.open(name, module_id, management=agent)
            except EdgekeeperError as error:
                log.warning("workload socket of module %s: %s", name, error.render())
        if renamed:
            reconciler.recreate_all(
                f"modules {', '.join(renamed)} act as IoT Edge's identities now"
            )

    @staticmethod
    async def _drop_named_identity(identities: ModuleIdentities, name: str) -> bool:
        """Delete the identity `name` if the daemon made it for the module (managed by IoT Edge's
        default manager); True if it did."""
        try:
            identity = identities.get(name)
        except IdentityNotFound:
            return False
        if identity.managed_by != DEFAULT_MANAGER:
            return False
        await identities.delete(name)
        log.warning(
            "module %s: its old identity %s is deleted; it acts as its IoT Edge one", name, name
        )
        return True


def device_facts(config: Config, device: DeviceIdentity) -> DeviceFacts:
    """The device facts every module's environment carries: the provisioned hub and device id
    (the host name and no hub for a device without a cloud identity), the gateway host name
    (`hostname`), the parent's (`parent_hostname`) and the engine network (`[runtime] network`)."""
    return DeviceFacts(
        device_id=device.device_id,
        iothub_hostname=device.hub,
        gateway_hostname=config.hostname,
        parent_hostname=config.parent_hostname,
        network=config.runtime.network,
    )
