"""The service contract and the context every service runs with.

A service is any object with
- `name: str`, unique in the daemon (it names the service in logs and status);
- `async def run(self, ctx: DaemonContext) -> None`: does its work until cancelled; returning
  means it is done, raising means it failed (the supervisor restarts it with back-off);
  cancellation is the request to stop: clean up in `finally` and return promptly;
- optionally `async def prepare(self, ctx) -> None`: acquires what the service needs (opens the
  UART, binds the socket) and returns. At daemon start every service is prepared before READY;
  an `EdgekeeperError` raised there ends the start with that error (one line, exit non-zero).
  On a restart it is called again and its failure counts like a failure of `run`;
- optionally `def describe(self) -> dict`: detail for the status API (JSON-serialisable).

`DaemonContext` is shared by all services. It is frozen; `ctx.config` always gives the config in
force (a reload swaps it and restarts the services whose sections changed).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

if TYPE_CHECKING:
    from firmware.daemon.logs import LogControl
    from firmware.daemon.supervisor import Supervisor
    from firmware.executor import BoundedExecutor
    from firmware.store.state import StateStore

S = TypeVar("S")


@runtime_checkable
class Service(Protocol):
    """What the supervisor runs."""

    name: str

    async def run(self, ctx: DaemonContext) -> None:
        """Serve until cancelled (return when done, raise on failure)."""


class ConfigCell:
    """The configuration in force; replaced as a whole by a reload."""

    def __init__(self, config: Any) -> None:
        self.current = config


class ServiceDirectory:
    """Look up the daemon's other services by type or name."""

    def __init__(self, services: Iterable[Any] = ()) -> None:
        self._services: dict[str, Any] = {s.name: s for s in services}

    def add(self, service: Any) -> None:
        """Make `service` findable (replaces one with the same name)."""
        self._services[service.name] = service

    def remove(self, name: str) -> None:
        """Forget the service called `name`, if present."""
        self._services.pop(name, None)

    def get(self, name: str) -> Any | None:
        """The service called `name`, or None."""
        return self._services.get(name)

    def find(self, kind: type[S]) -> S | None:
        """The first running service that is an instance of `kind`, or None."""
        for service in self._services.values():
            if isinstance(service, kind):
                return service
        return None

    def __iter__(self):
        return iter(list(self._services.values()))


@dataclass(frozen=True)
class DaemonContext:
    """What a service gets: configuration, state, API router, executor, logs and its peers."""

    config_cell: ConfigCell
    store: StateStore
    router: Any
    executor: BoundedExecutor
    supervisor: Supervisor
    logs: LogControl
    started_at: float
    services: ServiceDirectory = field(default_factory=ServiceDirectory)
    request_stop: Callable[[], None] = field(default=lambda: None)

    @property
    def config(self) -> Any:
        """The `firmware.config` Config in force."""
        return self.config_cell.current
