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
from pathlib import Path
from typing import Any

from firmware.api.management.identities import register_identity_routes
from firmware.api.model import ApiRequest, ApiResponse
from firmware.api.server import ApiSocketServer
from firmware.api.workload.access import ContainerRef, WorkloadAccess
from firmware.api.workload.environment import DeviceFacts
from firmware.api.workload.hook import WorkloadHook
from firmware.api.workload.ratelimit import RateLimit, SocketRateLimits
from firmware.api.workload.routes import WorkloadApi
from firmware.api.workload.sockets import ModuleSockets
from firmware.errors import EdgekeeperError, NotFound, Unavailable

log = logging.getLogger("edgekeeper.workload")

SERVICE_NAME = "workload"


class WorkloadService:
    """The workload API under the daemon's supervisor."""

    name = SERVICE_NAME

    def __init__(self) -> None:
        self.identities: Any = None
        self.sockets: ModuleSockets | None = None
        self.limits = SocketRateLimits(RateLimit())
        self._ready = asyncio.Event()
        self._hook: WorkloadHook | None = None

    async def prepare(self, ctx: Any) -> None:
        register_routes(ctx.router, ctx)
        self._hook_runtime(ctx)

    async def run(self, ctx: Any) -> None:
        from firmware.identity.modules import ModuleIdentities
        from firmware.keys.daemon import key_service

        register_routes(ctx.router, ctx)
        self._hook_runtime(ctx)  # before any await: the reconciler must not create without it
        keys = await key_service(ctx)
        identities = ModuleIdentities(keys, ctx.store, ctx.executor.run)
        await identities.start()
        listen = ctx.config.listen
        sockets = self._module_sockets(ctx)
        shared = ApiSocketServer(
            listen.workload_uri,
            ctx.router,
            listener="workload",
            mode=listen.socket_mode,
            group=listen.socket_group,
        )
        await shared.start()
        self.identities = identities
        try:
            self._ready.set()
            await self._join_runtime(ctx, sockets)
            log.info("workload API ready on %s", listen.workload_uri)
            await shared.serve_forever()
        finally:
            self._ready.clear()
            await shared.close()
            await sockets.close_all()

    async def wait_ready(self) -> Any:
        await self._ready.wait()
        return self.identities

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

    def _hook_runtime(self, ctx: Any) -> None:
        """Register the module hook with the runtime service (once; it outlives restarts)."""
        runtime = ctx.services.get("runtime")
        if runtime is None or self._hook is not None:
            return
        self._hook = WorkloadHook(
            self.wait_ready,
            self._module_sockets(ctx),
            device_facts(ctx.config),
            is_agent=lambda name: _is_agent(runtime, name),
            management_socket=_unix_path(ctx.config.listen.management_uri),
            forget_limits=self.limits.forget,
        )
        runtime.add_hook(self._hook)

    def _module_sockets(self, ctx: Any) -> ModuleSockets:
        if self.sockets is None:
            self.sockets = ModuleSockets(Path(ctx.config.paths.run_dir), ctx.router)
        return self.sockets

    async def _join_runtime(self, ctx: Any, sockets: ModuleSockets) -> None:
        """Open the sockets of the modules the runtime already runs (adopted at start), and
        restart their containers: a bind mount keeps the socket file it found at container
        start, so a container from before this daemon started holds a dead socket."""
        self._hook_runtime(ctx)
        runtime = ctx.services.get("runtime")
        reconciler = getattr(runtime, "reconciler", None)
        if reconciler is None or self._hook is None:
            log.info("no runtime service: only the shared workload socket is served")
            return
        await reconciler.loaded()
        for name in reconciler.modules():
            try:
                await self.identities.ensure(name)
                await sockets.open(name)
                if name in self._hook.prepared or await reconciler.container_id(name) is None:
                    continue
                await reconciler.restart(name)
                log.info("module %s restarted to mount its new workload socket", name)
            except EdgekeeperError as error:
                log.warning("workload socket of module %s: %s", name, error.render())


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

    limits = getattr(ctx.services.get(SERVICE_NAME), "limits", None) or SocketRateLimits(
        RateLimit()
    )
    access = WorkloadAccess(containers, ctx.executor.run)
    WorkloadApi(identities, keys, certs, access, limits).register(router)
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


def _unix_path(uri: str) -> str | None:
    return uri[len("unix://") :] if uri.startswith("unix://") else None
