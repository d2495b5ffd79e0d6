"""Daemon service "workload": module identities, the workload API and its sockets.

`prepare` registers the routes (workload API; `/identities` and `/workload/sockets` on the
management API). `run` waits for the key service, loads the module identities (creating the
master identity key if absent), serves the shared workload socket (`[listen] workload_uri`,
callers identified by their container) and registers `WorkloadHook` with the runtime service so
every module container gets its own socket and `IOTEDGE_*` environment. Modules already running
when it starts (adopted after a daemon restart) get their sockets opened again.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from pathlib import Path
from typing import Any

from firmware.api.management.identities import register_identity_routes
from firmware.api.model import ApiRequest, ApiResponse
from firmware.api.server import ApiSocketServer
from firmware.api.workload.access import ContainerRef, WorkloadAccess
from firmware.api.workload.environment import DeviceFacts
from firmware.api.workload.hook import WorkloadHook, WorkloadPlacement
from firmware.api.workload.ratelimit import RateLimit, SocketRateLimits
from firmware.api.workload.routes import WorkloadApi
from firmware.api.workload.sockets import ModuleSockets
from firmware.errors import EdgekeeperError, NotFound, Unavailable

log = logging.getLogger("edgekeeper.workload")

SERVICE_NAME = "workload"
READY_WAIT_S = 60.0


class WorkloadService:
    """The workload API under the daemon's supervisor."""

    name = SERVICE_NAME

    def __init__(self) -> None:
        self.identities: Any = None
        self.sockets: ModuleSockets | None = None
        self._placement: WorkloadPlacement | None = None
        self._ready = asyncio.Event()

    async def prepare(self, ctx: Any) -> None:
        register_routes(ctx.router, ctx)
        _hook_runtime(ctx)

    async def run(self, ctx: Any) -> None:
        from firmware.identity.modules import ModuleIdentities
        from firmware.keys.daemon import key_service

        register_routes(ctx.router, ctx)
        hook = _hook_runtime(ctx)  # before any await: the reconciler must not create without it
        keys = await key_service(ctx)
        identities = ModuleIdentities(keys, ctx.store, ctx.executor.run)
        await identities.start()
        config = ctx.config
        listen = config.listen
        sockets = ModuleSockets(Path(config.paths.run_dir), ctx.router)
        shared = ApiSocketServer(
            listen.workload_uri,
            ctx.router,
            listener="workload",
            mode=listen.socket_mode,
            group=listen.socket_group,
        )
        await shared.start()
        self.identities, self.sockets = identities, sockets
        self._placement = WorkloadPlacement(
            identities, sockets, device_facts(config), shared_limits(ctx.router)
        )
        try:
            self._ready.set()
            await self._join_runtime(ctx, sockets, hook)
            log.info("workload API ready on %s", listen.workload_uri)
            await shared.serve_forever()
        finally:
            self._ready.clear()
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
                hint="see `edgekeeper status`: it waits for the key service",
            ) from None
        assert self._placement is not None
        return self._placement

    def current(self) -> Any:
        """The module identities when ready; `Unavailable` otherwise (never waits)."""
        if self.identities is None or not self._ready.is_set():
            raise Unavailable(
                "module identities are not ready (waiting for the key service)",
                hint="see `edgekeeper status` and the daemon log",
            )
        return self.identities

    def describe(self) -> dict[str, Any]:
        if self.sockets is None or not self._ready.is_set():
            return {"ready": False}
        return {
            "ready": True,
            "identities": len(self.identities.list()),
            "sockets": len(self.sockets.status()),
        }

    async def _join_runtime(
        self, ctx: Any, sockets: ModuleSockets, hook: WorkloadHook | None
    ) -> None:
        """Open the sockets of the modules the runtime already runs. Their containers mount the
        socket directory, so they reach the new sockets without a restart."""
        reconciler = getattr(ctx.services.get("runtime"), "reconciler", None)
        if reconciler is None or hook is None:
            log.info("no runtime service: only the shared workload socket is served")
            return
        await reconciler.loaded()
        for name in reconciler.modules():
            try:
                await self.identities.ensure(name)
                await sockets.open(name, management=reconciler.is_agent(name))
            except EdgekeeperError as error:
                log.warning("workload socket of module %s: %s", name, error.render())


# One hook per runtime service and one set of rate limits per router, whichever instance of the
# workload service (a reload makes a new one) is running.
_HOOKS: weakref.WeakKeyDictionary[Any, WorkloadHook] = weakref.WeakKeyDictionary()
_LIMITS: weakref.WeakKeyDictionary[Any, SocketRateLimits] = weakref.WeakKeyDictionary()


def shared_limits(router: Any) -> SocketRateLimits:
    limits = _LIMITS.get(router)
    if limits is None:
        limits = _LIMITS[router] = SocketRateLimits(RateLimit())
    return limits


def _hook_runtime(ctx: Any) -> WorkloadHook | None:
    """The module hook, registered with the runtime service once (it outlives restarts)."""
    runtime = ctx.services.get("runtime")
    if runtime is None:
        return None
    hook = _HOOKS.get(runtime)
    if hook is None:

        async def placement() -> WorkloadPlacement:
            return await _service(ctx).placement()

        hook = _HOOKS[runtime] = WorkloadHook(
            placement, is_agent=lambda name: _is_agent(runtime, name)
        )
        runtime.add_hook(hook)
    return hook


def device_facts(config: Any) -> DeviceFacts:
    provisioning = config.provisioning
    return DeviceFacts(
        device_id=provisioning.device_id or config.hostname,
        iothub_hostname=provisioning.iothub_hostname or "",
        gateway_hostname=config.hostname,
    )


def register_routes(router: Any, ctx: Any) -> None:
    """The workload API and the management routes, once per router (handlers find the running
    services at request time)."""
    if any(route.pattern == "/trust-bundle" for route in router.routes()):
        return

    def identities() -> Any:
        return _service(ctx).current()

    def keys() -> Any:
        return _named(ctx, "keys").current()

    def certs() -> Any:
        return _named(ctx, "certs").current()

    async def containers(module: str) -> ContainerRef | None:
        return await _container_of(ctx, module)

    access = WorkloadAccess(containers, ctx.executor.run)
    WorkloadApi(identities, keys, certs, access, shared_limits(router)).register(router)
    register_identity_routes(router, identities)

    async def socket_status(request: ApiRequest) -> ApiResponse:
        sockets = _service(ctx).sockets
        listing = sockets.status() if sockets is not None else []
        return ApiResponse(200, {"sockets": [entry.document() for entry in listing]})

    router.add("GET", "/workload/sockets", socket_status)


async def _container_of(ctx: Any, module: str) -> ContainerRef | None:
    runtime = ctx.services.get("runtime")
    reconciler = getattr(runtime, "reconciler", None)
    if reconciler is None:
        return None
    try:
        container_id = await reconciler.container_id(module)
        if container_id is None:
            return None
        info = await reconciler.engine.inspect(container_id)
    except NotFound:
        return None
    state = info.get("State") or {}
    if not state.get("Running"):
        return None
    return ContainerRef(str(info.get("Id", container_id)), int(state.get("Pid") or 0))


def _service(ctx: Any) -> WorkloadService:
    service = ctx.services.get(SERVICE_NAME)
    if service is None:
        raise Unavailable("the workload service is not running", hint="check the daemon log")
    return service


def _named(ctx: Any, name: str) -> Any:
    service = ctx.services.get(name)
    if service is None:
        raise Unavailable(f"the {name} service is not running", hint="check the daemon log")
    return service


def _is_agent(runtime: Any, name: str) -> bool:
    reconciler = getattr(runtime, "reconciler", None)
    return reconciler is not None and reconciler.is_agent(name)
