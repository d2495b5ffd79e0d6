"""The supervision tree: each service is a task, restarted with back-off when it fails.

A service that raises is logged with its traceback and restarted after a delay that starts at
`initial_delay` and doubles up to `max_delay`; a run that stayed up for `healthy_after` seconds
resets the delay. A service that fails `max_failures` times within `failure_window` seconds is
marked failed and left stopped: the daemon is then degraded, the other services go on.
Waiting between restarts is a loop timer (`asyncio.sleep`), never a polling loop.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from firmware.errors import EdgekeeperError
from firmware.logs import fields, get_logger
from firmware.redaction import redact

if TYPE_CHECKING:
    from firmware.daemon.service import Service

log = get_logger("supervisor")

STARTING = "starting"
RUNNING = "running"
BACKOFF = "backoff"
FAILED = "failed"
STOPPING = "stopping"
STOPPED = "stopped"


@dataclass(frozen=True)
class RestartPolicy:
    """How hard the supervisor tries before it gives a service up."""

    initial_delay: float = 1.0
    max_delay: float = 60.0
    healthy_after: float = 60.0
    max_failures: int = 5
    failure_window: float = 300.0


@dataclass(frozen=True)
class ServiceState:
    """One service as the status API shows it; `since` is when it entered `state` (epoch s)."""

    name: str
    state: str
    restarts: int
    last_error: str | None
    since: float


@dataclass
class _Supervised:
    service: Service
    state: str = STARTING
    restarts: int = 0
    last_error: str | None = None
    since: float = field(default_factory=time.time)
    failures: deque[float] = field(default_factory=deque)
    task: asyncio.Task[None] | None = None


def describe_error(exc: BaseException) -> str:
    """A one-line description of why a service failed."""
    if isinstance(exc, EdgekeeperError):
        return exc.render()
    return redact(f"{type(exc).__name__}: {exc}") if str(exc) else type(exc).__name__


class Supervisor:
    """Runs services as tasks and keeps them running."""

    def __init__(
        self,
        policy: RestartPolicy | None = None,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.policy = policy or RestartPolicy()
        self._on_change = on_change
        self._supervised: dict[str, _Supervised] = {}

    @property
    def degraded(self) -> bool:
        """True when some service was given up."""
        return any(s.state == FAILED for s in self._supervised.values())

    def names(self) -> list[str]:
        """Names of the supervised services, in start order."""
        return list(self._supervised)

    def service(self, name: str) -> Service | None:
        """The service object supervised under `name`, or None."""
        supervised = self._supervised.get(name)
        return supervised.service if supervised else None

    def snapshot(self) -> list[ServiceState]:
        """The state of every supervised service."""
        return [
            ServiceState(s.service.name, s.state, s.restarts, s.last_error, s.since)
            for s in self._supervised.values()
        ]

    def add(self, service: Service) -> None:
        """Register `service` (not started yet): it shows in the snapshot from now on."""
        if service.name in self._supervised and self._is_alive(service.name):
            raise RuntimeError(f"service {service.name} is already supervised and running")
        self._supervised[service.name] = _Supervised(service)

    def start(self, service: Service, *, prepared: bool = False) -> None:
        """Run `service` under supervision; `prepared` skips its first `prepare` call."""
        supervised = self._supervised.get(service.name)
        if supervised is None or supervised.service is not service:
            self.add(service)
            supervised = self._supervised[service.name]
        supervised.task = asyncio.create_task(
            self._supervise(supervised, prepared), name=f"service:{service.name}"
        )

    async def stop(self, name: str, grace_s: float) -> bool:
        """Cancel service `name` and wait up to `grace_s`; True if it ended in time."""
        return not await self._stop([name], grace_s)

    async def stop_all(self, grace_s: float) -> list[str]:
        """Cancel every service and wait up to `grace_s` for all; the names that overran."""
        return await self._stop(list(reversed(self._supervised)), grace_s)

    def forget(self, name: str) -> None:
        """Drop a stopped service from the snapshot."""
        if not self._is_alive(name):
            self._supervised.pop(name, None)

    def _is_alive(self, name: str) -> bool:
        supervised = self._supervised.get(name)
        return bool(supervised and supervised.task and not supervised.task.done())

    async def _stop(self, names: list[str], grace_s: float) -> list[str]:
        tasks: dict[asyncio.Task[None], _Supervised] = {}
        for name in names:
            supervised = self._supervised.get(name)
            if supervised is None:
                continue
            if supervised.task is not None and not supervised.task.done():
                self._set(supervised, STOPPING)
                supervised.task.cancel()
                tasks[supervised.task] = supervised
            elif supervised.state != FAILED:
                self._set(supervised, STOPPED)
        if not tasks:
            return []
        done, pending = await asyncio.wait(tasks, timeout=grace_s)
        for task in done:
            self._set(tasks[task], STOPPED)
        overran = [tasks[task].service.name for task in pending]
        for name in overran:
            log.error("service did not stop in time", extra=fields(service=name, grace_s=grace_s))
        return overran

    def _set(self, supervised: _Supervised, state: str) -> None:
        supervised.state = state
        supervised.since = time.time()
        if self._on_change is not None:
            self._on_change()

    async def _supervise(self, supervised: _Supervised, prepared: bool) -> None:
        loop = asyncio.get_running_loop()
        policy = self.policy
        delay = policy.initial_delay
        service = supervised.service
        while True:
            began = loop.time()
            try:
                if not prepared:
                    await service.prepare()
                prepared = False
                self._set(supervised, RUNNING)
                await service.run()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                supervised.last_error = describe_error(exc)
                log.error(
                    "service failed",
                    exc_info=exc,
                    extra=fields(service=service.name, error=supervised.last_error),
                )
            else:
                log.info("service finished", extra=fields(service=service.name))
                self._set(supervised, STOPPED)
                return
            now = loop.time()
            if now - began >= policy.healthy_after:
                delay = policy.initial_delay
            failures = supervised.failures
            failures.append(now)
            while failures and now - failures[0] > policy.failure_window:
                failures.popleft()
            if len(failures) >= policy.max_failures:
                log.error(
                    "service keeps failing; giving it up, the daemon is degraded",
                    extra=fields(
                        service=service.name,
                        failures=len(failures),
                        window_s=policy.failure_window,
                    ),
                )
                self._set(supervised, FAILED)
                return
            log.info("restarting service", extra=fields(service=service.name, delay_s=delay))
            self._set(supervised, BACKOFF)
            await asyncio.sleep(delay)
            delay = min(delay * 2, policy.max_delay)
            supervised.restarts += 1
