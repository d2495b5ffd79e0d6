"""The service contract, the typed directory of the daemon's services, and the daemon context.

A service is built by the wiring (`firmware.daemon.wiring`) with everything it needs passed to
its constructor, and then driven by the supervisor through `Service`:
- `name`: unique in the daemon (it names the service in logs, status and the directory);
- `prepare()`: acquires what the service needs (opens the UART, binds the socket) and returns.
  At daemon start every service is prepared before READY; an `EdgekeeperError` raised there ends
  the start with that error. On a restart it is called again and its failure counts like a
  failure of `run`;
- `run()`: does its work until cancelled; returning means it is done, raising means it failed
  (the supervisor restarts it with back-off); cancellation is the request to stop;
- `describe()`: detail for the status API.

A service may also be `Reconfigurable`: on a reload that changed its config sections the daemon
calls `reconfigure(config)` first and restarts the service only if that answers False or fails
with anything but an `EdgekeeperError`. An `EdgekeeperError` means the new config cannot be used
and the service goes on as it was: the daemon logs it and is degraded until a reload applies.

`ServiceDirectory` is how one service (or a route) reaches another at the moment it needs it: a
reload replaces a service object, and whoever holds the directory finds the new one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Protocol, TypeVar, runtime_checkable

from firmware.errors import Unavailable

if TYPE_CHECKING:
    from firmware.api.listeners import ApiServerService
    from firmware.api.router import Router
    from firmware.api.workload.daemon import WorkloadService
    from firmware.certs.daemon import CertificatesService
    from firmware.config.schema import Config
    from firmware.console.service import ConsoleService
    from firmware.daemon.logs import LogControl
    from firmware.daemon.supervisor import Supervisor
    from firmware.executor import BoundedExecutor
    from firmware.identity.daemon import IdentityService
    from firmware.keys.daemon import KeysService
    from firmware.runtime.service import RuntimeService
    from firmware.store.state import StateStore

S = TypeVar("S")


class Service(Protocol):
    """What the supervisor runs."""

    @property
    def name(self) -> str:
        """The service's name, unique in the daemon."""

    async def prepare(self) -> None:
        """Acquire what the service needs; errors here fail the daemon's start."""

    async def run(self) -> None:
        """Serve until cancelled (return when done, raise on failure)."""

    def describe(self) -> dict[str, object]:
        """Detail for the status API (JSON-serialisable)."""


@runtime_checkable
class Reconfigurable(Service, Protocol):
    """A service that can also take a new configuration without being stopped."""

    async def reconfigure(self, config: Config) -> bool:
        """Apply `config` in place: True if applied, False if only a restart can; raise an
        `EdgekeeperError` (having changed nothing) if `config` is unusable."""


class ConfigCell:
    """The configuration in force; replaced as a whole by a reload."""

    def __init__(self, config: Config) -> None:
        self.current = config


@dataclass
class ServiceDirectory:
    """The daemon's services by role, as the wiring created them; a reload replaces entries and
    a stopped service's entry is None."""

    api: ApiServerService | None = None
    console: ConsoleService | None = None
    keys: KeysService | None = None
    identity: IdentityService | None = None
    certs: CertificatesService | None = None
    runtime: RuntimeService | None = None
    workload: WorkloadService | None = None

    def forget(self, name: str) -> None:
        """Clear the entry of the service called `name` (after it stopped)."""
        if name in {role.name for role in fields(self)}:
            setattr(self, name, None)

    def require_keys(self) -> KeysService:
        return _running(self.keys, "the key service")

    def require_identity(self) -> IdentityService:
        return _running(self.identity, "the identity service")

    def require_certs(self) -> CertificatesService:
        return _running(self.certs, "the certificate service")

    def require_runtime(self) -> RuntimeService:
        return _running(self.runtime, "the runtime service", "set [runtime] uri in config.toml")

    def require_workload(self) -> WorkloadService:
        return _running(self.workload, "the workload service")


def _running(service: S | None, what: str, hint: str = "check the daemon log") -> S:
    if service is None:
        raise Unavailable(f"{what} is not running", hint=hint)
    return service


@dataclass(frozen=True)
class DaemonContext:
    """What the wiring builds services from: configuration, state, router, executor, logs."""

    config_cell: ConfigCell
    store: StateStore
    router: Router
    executor: BoundedExecutor
    supervisor: Supervisor
    logs: LogControl
    started_at: float
    services: ServiceDirectory
    request_stop: Callable[[], None]

    @property
    def config(self) -> Config:
        """The configuration in force."""
        return self.config_cell.current
