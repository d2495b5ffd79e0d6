"""The one place the daemon is wired: which services run, what each is built from, every route of
the local APIs and every module hook.

`Wiring(ctx)` is made once per daemon. Its `catalogue` lists the services in start order: each
`ServiceEntry` names the service, the config sections whose change restarts it on reload (or
reconfigures it in place, for a `Reconfigurable` service such as keys), when it is enabled, and how
to build it from the context (a restart builds a new one from the new config). Services that use
keys hold the one `KeyService`, which a reload reconfigures and never replaces, so [keys] and [tpm]
are no section of theirs. `register_routes` adds every route to the router once, at start; the
handlers reach the services through the typed `ServiceDirectory` at request time, so a restarted or
reloaded service is found without registering anything again. The workload module hook, the shared
rate limits and the workload budgets (which read `[workload.budgets]` of the current config on every
spend) are made here once and outlive every service restart.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from firmware.api.listeners import ApiServerService
from firmware.api.management import (
    certificates,
    daemon,
    deployments,
    identities,
    key_migration,
    keys,
    logs,
    modules,
    support_bundle,
    system,
    workload,
)
from firmware.api.management.journal import LogRing
from firmware.api.workload.access import WorkloadAccess
from firmware.api.workload.daemon import WorkloadService
from firmware.api.workload.hook import WorkloadHook, WorkloadPlacement
from firmware.api.workload.ratelimit import ModuleBudgets, RateLimit, SocketRateLimits
from firmware.api.workload.routes import WorkloadApi
from firmware.certs.daemon import CertificatesService
from firmware.config.schema import Config
from firmware.daemon.service import DaemonContext, Service
from firmware.daemon.status import DaemonStatus
from firmware.identity.daemon import IdentityService
from firmware.identity.device import DeviceIdentity
from firmware.identity.model import module_of_identity
from firmware.identity.modules import ModuleIdentities
from firmware.keys.daemon import KeysService
from firmware.keys.service import KeyService
from firmware.logs import fields, get_logger
from firmware.runtime.reconciler import Reconciler
from firmware.runtime.service import RuntimeService
from firmware.runtime.status import RunningContainer

if TYPE_CHECKING:
    from firmware.certs.service import CertificateService


log = get_logger("daemon")

#: How long the first container waits for the certificate service (see `_modules_may_start`).
CERTS_START_WAIT_S = 60.0

#: What the identity service is built from; the workload service, which serves the identities
#: it holds, restarts with it.
IDENTITY_SECTIONS = (
    "provisioning",
    "hostname",
    "paths",
    "auto_reprovisioning_mode",
    "cloud_timeout_sec",
    "cloud_retries",
    "trust_bundle_cert",
)


def _always(config: Config) -> bool:
    return True


@dataclass(frozen=True)
class ServiceEntry:
    """One service the daemon can run."""

    name: str
    create: Callable[[DaemonContext], Service]
    sections: tuple[str, ...]
    enabled: Callable[[Config], bool] = _always

    def section_changed(self, old: Config, new: Config) -> bool:
        """True if a config section this service depends on differs between two configs."""
        return any(getattr(old, section) != getattr(new, section) for section in self.sections)


class Wiring:
    """The daemon's services, routes and hooks, built from one `DaemonContext`."""

    def __init__(self, ctx: DaemonContext) -> None:
        self.ctx = ctx
        self.workload_limits = SocketRateLimits(
            lambda: RateLimit(rate=float(self.ctx.config.workload.requests_per_socket))
        )
        self.workload_budgets = ModuleBudgets(lambda: self.ctx.config.workload.budgets)
        self.workload_hook = WorkloadHook(self._placement, is_agent=self._is_agent)
        self.catalogue: tuple[ServiceEntry, ...] = (
            ServiceEntry("api", self._api, ("listen", "paths")),
            ServiceEntry(
                "console",
                self._console,
                ("console", "paths"),
                lambda config: config.console.device != "none",
            ),
            ServiceEntry("keys", self._keys, ("keys", "tpm", "paths")),
            ServiceEntry("identity", self._identity, IDENTITY_SECTIONS),
            ServiceEntry(
                "certs",
                self._certs,
                (
                    "certificates",
                    "edge_ca",
                    "paths",
                    "hostname",
                    "trust_bundle_cert",
                    "manifest_trust_bundle_cert",
                ),
            ),
            ServiceEntry(
                "runtime",
                self._runtime,
                (
                    "runtime",
                    "agent",
                    "watchdog",
                    "image_garbage_collection",
                    "paths",
                    "allow_elevated_docker_permissions",
                ),
                lambda config: bool(config.runtime.uri),
            ),
            ServiceEntry(
                "workload",
                self._workload,
                ("listen", *IDENTITY_SECTIONS),
            ),
        )

    def enabled(self, config: Config) -> list[ServiceEntry]:
        """The entries `config` enables, in start order."""
        return [entry for entry in self.catalogue if entry.enabled(config)]

    # --- services ----------------------------------------------------------------------------

    def _api(self, ctx: DaemonContext) -> Service:
        service = ctx.services.api = ApiServerService(ctx.config.listen, ctx.router)
        return service

    def _console(self, ctx: DaemonContext) -> Service:
        # Deferred: the console (and pyserial) load only on boards that have one.
        from firmware.console.service import (
            ConsoleService,
            command_completer,
            command_table_runner,
        )

        service = ConsoleService(
            ctx.config,
            ctx.executor,
            ctx.logs,
            command_table_runner(ctx.router, ctx.executor.run),
            completer=command_completer(ctx.router),
        )
        ctx.services.console = service
        return service

    def _keys(self, ctx: DaemonContext) -> Service:
        service = ctx.services.keys = KeysService(ctx.config, ctx.executor, ctx.store)
        return service

    def _identity(self, ctx: DaemonContext) -> Service:
        service = IdentityService(
            ctx.config, ctx.store, ctx.executor, keys=self._key_service, moved=self._device_moved
        )
        ctx.services.identity = service
        return service

    def _certs(self, ctx: DaemonContext) -> Service:
        service = CertificatesService(ctx.config, self._key_service, ctx.executor)
        ctx.services.certs = service
        return service

    def _runtime(self, ctx: DaemonContext) -> Service:
        service = RuntimeService(
            ctx.config,
            ctx.store,
            ctx.executor,
            hooks=(self.workload_hook,),
            start_gate=self._modules_may_start,
        )
        ctx.services.runtime = service
        return service

    def _workload(self, ctx: DaemonContext) -> Service:
        service = WorkloadService(
            ctx.config,
            ctx.store,
            ctx.executor,
            ctx.router,
            identities=self._identity_ready,
            device=self._device_now,
            reconciler=self._reconciler_if_any,
            limits=self.workload_limits,
        )
        ctx.services.workload = service
        return service

    # --- routes ------------------------------------------------------------------------------

    def register_routes(self, status: DaemonStatus) -> None:
        """Add every route of the management and workload APIs to the router (once, at start)."""
        ctx = self.ctx
        ring = LogRing()
        ctx.logs.add_sink(ring)
        table = [
            *daemon.routes(status),
            *keys.routes(self._keys_now),
            *key_migration.routes(self._keys_now, ctx.executor),
            *certificates.routes(self._certs_now),
            *modules.routes(self._reconciler),
            *logs.routes(self._reconciler),
            *system.routes(
                self._config,
                self._reconciler,
                self._identity_now,
                ring,
                ctx.started_at,
                ctx.executor.run,
            ),
            *support_bundle.routes(
                support_bundle.BundleSources(
                    ctx.router.dispatch,
                    self._config,
                    self._reconciler,
                    self._certs_now,
                    ring,
                    ctx.executor.run,
                )
            ),
            *deployments.routes(self._config, self._reconciler),
            *identities.routes(self._identities_now),
            *workload.routes(self._module_sockets),
        ]
        for method, pattern, handler in table:
            ctx.router.add(method, pattern, handler)
        access = WorkloadAccess(self._container_of, ctx.executor.run)
        api = WorkloadApi(
            self._identities_now,
            self._certs_now,
            access,
            self.workload_limits,
            self.workload_budgets,
        )
        api.register(ctx.router)

    # --- what routes and hooks reach at request time -----------------------------------------

    def _config(self) -> Config:
        return self.ctx.config

    async def _key_service(self) -> KeyService:
        return await self.ctx.services.require_keys().wait_ready()

    def _keys_now(self) -> KeyService:
        return self.ctx.services.require_keys().current()

    def _certs_now(self) -> CertificateService:
        return self.ctx.services.require_certs().current()

    def _identities_now(self) -> ModuleIdentities:
        return self.ctx.services.require_identity().current()

    def _identity_now(self) -> IdentityService:
        return self.ctx.services.require_identity()

    async def _identity_ready(self) -> ModuleIdentities:
        return await self.ctx.services.require_identity().wait_identities()

    def _device_now(self) -> DeviceIdentity:
        return self.ctx.services.require_identity().device()

    async def _modules_may_start(self) -> None:
        """What the first container waits for: the device identity (however long it takes) and
        the certificate service, so that a module asking for a certificate as it starts is not
        refused; a certificate service still not up after `CERTS_START_WAIT_S` (a broken Edge CA)
        does not hold back the modules that need none."""
        await self.ctx.services.require_identity().wait_device()
        try:
            async with asyncio.timeout(CERTS_START_WAIT_S):
                await self.ctx.services.require_certs().wait_ready()
        except TimeoutError:
            log.warning(
                "starting modules before the certificate service is ready",
                extra=fields(waited_s=CERTS_START_WAIT_S),
            )

    async def _device_moved(self, reason: str) -> None:
        reconciler = self._reconciler_if_any()
        if reconciler is not None:
            reconciler.recreate_all(reason)

    def _module_sockets(self) -> workload.SocketListing:
        return self.ctx.services.require_workload().sockets

    def _reconciler(self) -> Reconciler:
        return self.ctx.services.require_runtime().current()

    def _reconciler_if_any(self) -> Reconciler | None:
        runtime = self.ctx.services.runtime
        return runtime.reconciler if runtime is not None else None

    async def _placement(self) -> WorkloadPlacement:
        return await self.ctx.services.require_workload().placement()

    def _is_agent(self, name: str) -> bool:
        reconciler = self._reconciler_if_any()
        return reconciler is not None and reconciler.is_agent(name)

    async def _container_of(self, module_id: str) -> RunningContainer | None:
        """The running container of the module acting as identity `module_id`, if any."""
        reconciler = self._reconciler_if_any()
        if reconciler is None:
            return None
        module = module_of_identity(module_id, reconciler.agent_name)
        return None if module is None else await reconciler.running_container(module)
