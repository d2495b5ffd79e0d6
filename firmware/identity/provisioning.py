"""`DeviceProvisioner`: the device identity from the cache, the manual settings or DPS, and when to
ask again.

Offline first, as the field needs it (iotedge#4964, #6449, PR#7246):
- a start whose settings match the cache uses the cache and asks the cloud nothing, unless
  `auto_reprovisioning_mode = "AlwaysOnStartup"`, which asks DPS and falls back to the cache
  when DPS cannot be reached;
- with no usable cache the device provisions; a failure is raised to the identity service, which
  tries again with back-off (`ProvisioningBackoff`) and meanwhile shows "waiting for provisioning";
- only an authentication failure (`CloudUnauthorized` from the hub: a 401, a disabled device)
  or a request (the agent's `POST /device/reprovision`, `system reprovision`) provisions again,
  never a network error; reprovisions are spaced (5 minutes after one that succeeded, a back-off
  from 5 s after failed ones), so a device whose credentials are wrong does not loop against
  DPS; a failed reprovision keeps the identity in force and its cache.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Literal, Protocol

from firmware.errors import EdgekeeperError
from firmware.executor import RunBlocking
from firmware.identity.device import DeviceIdentity, DeviceIdentityCache
from firmware.identity.errors import CloudAnswerMalformed, CloudUnreachable
from firmware.logs import fields, get_logger

log = get_logger("identity")

Mode = Literal["Dynamic", "AlwaysOnStartup", "OnErrorOnly"]


class ProvisioningSource(Protocol):
    """Where an identity comes from: `[provisioning]` itself (manual) or DPS."""

    kind: str

    async def obtain(self) -> DeviceIdentity:
        """A fresh identity; raises the identity errors (cloud unreachable, rejected...)."""
        ...

    async def cache_trusted(self) -> bool:
        """False when the cached identity may no longer hold (an attestation was cut short
        after DPS may have given the hub a new key): the start then asks DPS first."""
        ...


@dataclass(frozen=True)
class ProvisioningState:
    """What `status` shows about provisioning."""

    source: str
    state: str
    hub: str | None = None
    device_id: str | None = None
    last_result: str | None = None
    last_at: float | None = None
    next_retry_at: float | None = None
    reprovisions: int = 0

    def document(self) -> dict[str, object]:
        return {
            "source": self.source,
            "state": self.state,
            "hub": self.hub,
            "deviceId": self.device_id,
            "lastResult": self.last_result,
            "lastAt": self.last_at,
            "nextRetryAt": self.next_retry_at,
            "reprovisions": self.reprovisions,
        }


class ProvisioningBackoff:
    """Exponential back-off with full jitter between `first_s` and `most_s`; a server's
    Retry-After is honoured when longer (bounded by `most_s`)."""

    def __init__(
        self,
        first_s: float = 5.0,
        most_s: float = 3600.0,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self._first = first_s
        self._most = most_s
        self._rng = rng
        self._failures = 0

    def next_delay(self, retry_after_s: float | None = None) -> float:
        ceiling = min(self._most, self._first * 2.0**self._failures)
        self._failures += 1
        delay = ceiling / 2 + self._rng() * ceiling / 2
        if retry_after_s is not None:
            delay = max(delay, min(retry_after_s, self._most))
        return delay

    def reset(self) -> None:
        self._failures = 0


class DeviceProvisioner:
    """The device identity for one set of provisioning settings (`digest`)."""

    def __init__(
        self,
        source: ProvisioningSource,
        cache: DeviceIdentityCache,
        digest: str,
        run_blocking: RunBlocking,
        *,
        mode: Mode,
        reprovision_interval_s: float = 300.0,
        retry_first_s: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._source = source
        self._cache = cache
        self._digest = digest
        self._run_blocking = run_blocking
        self._mode = mode
        self._interval = reprovision_interval_s
        self._retry_first = retry_first_s
        self._clock = clock
        self._next_allowed = 0.0
        self._failures = 0
        self.identity: DeviceIdentity | None = None
        self.state = ProvisioningState(source=source.kind, state="starting")

    async def start(self) -> DeviceIdentity:
        """The identity to run with: the cache (unless AlwaysOnStartup asks DPS first), else a
        fresh one. Raises when there is neither."""
        cached = await self._run_blocking(self._cache.load, self._digest)
        trusted = cached is not None and await self._source.cache_trusted()
        if cached is not None and not trusted:
            log.warning("the last provisioning was cut short; asking DPS before using the cache")
        if cached is not None and trusted and self._mode != "AlwaysOnStartup":
            self._settle(cached, "from cache")
            log.info(
                "device identity from the cache",
                extra=fields(hub=cached.hub, device=cached.device_id, source=cached.source),
            )
            return cached
        try:
            return await self._obtain("provisioned")
        except (CloudUnreachable, CloudAnswerMalformed) as exc:
            if cached is None:
                raise
            log.warning(
                "provisioning at start failed; running with the cached identity",
                extra=fields(error=exc.render()),
            )
            self._settle(cached, "from cache", result=exc.render())
            return cached

    async def reprovision(self, reason: str) -> tuple[DeviceIdentity, bool]:
        """Provision again (`reason` is logged); `(identity, moved)` where `moved` says the hub or
        device id changed. A failure keeps the identity in force (and raises). Calls are spaced:
        `reprovision_interval_s` after one that succeeded (a device the hub keeps refusing is not
        sent to DPS in a loop), a back-off from `retry_first_s` after ones that failed; a call
        before then raises without asking the cloud."""
        now = self._clock()
        if now < self._next_allowed:
            wait = self._next_allowed - now
            raise CloudUnreachable(
                f"not provisioning again for {wait:.0f} s ({reason})",
                hint="reprovisioning is spaced so that a device whose credentials keep failing "
                "is not sent to DPS in a loop; check the enrollment and the device key",
                retry_after_s=wait,
            )
        previous = self.identity
        log.warning("provisioning again", extra=fields(reason=reason))
        self.state = replace(self.state, reprovisions=self.state.reprovisions + 1)
        try:
            identity = await self._obtain("reprovisioned")
        except EdgekeeperError:
            self._failures += 1
            spacing = min(self._interval, self._retry_first * 2.0 ** (self._failures - 1))
            self._next_allowed = self._clock() + spacing
            raise
        self._failures = 0
        self._next_allowed = self._clock() + self._interval
        return identity, not identity.same_place(previous)

    def failed(self, error: EdgekeeperError, next_retry_at: float | None) -> None:
        """Record a failed attempt for `status`."""
        state = "waiting for provisioning" if self.identity is None else self.state.state
        self.state = replace(
            self.state,
            state=state,
            last_result=error.render(),
            last_at=self._clock(),
            next_retry_at=next_retry_at,
        )

    async def _obtain(self, how: str) -> DeviceIdentity:
        identity = await self._source.obtain()
        await self._run_blocking(self._cache.save, identity, self._digest)
        self._settle(identity, how)
        log.info(
            "device provisioned",
            extra=fields(hub=identity.hub, device=identity.device_id, source=identity.source),
        )
        return identity

    def _settle(self, identity: DeviceIdentity, state: str, result: str = "ok") -> None:
        self.identity = identity
        self.state = replace(
            self.state,
            state=state,
            hub=identity.hub,
            device_id=identity.device_id,
            last_result=result,
            last_at=self._clock(),
            next_retry_at=None,
        )


class ManualSource:
    """`[provisioning] source = "manual"`: the hub and device id are in the configuration."""

    kind = "manual"

    def __init__(self, hub: str, device_id: str) -> None:
        self._hub = hub
        self._device_id = device_id

    async def obtain(self) -> DeviceIdentity:
        return DeviceIdentity("manual", self._hub, self._device_id, time.time())

    async def cache_trusted(self) -> bool:
        return True


class DpsSource:
    """`[provisioning] source = "dps"`: `register()` runs one DPS registration and returns the
    assignment's hub, device id and substatus; `interrupted()`, when given, says an earlier
    registration was cut short in a way that makes the cache doubtful (TPM attestation)."""

    kind = "dps"

    def __init__(
        self,
        register: Callable[[], Awaitable[tuple[str, str, str | None]]],
        interrupted: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        self._register = register
        self._interrupted = interrupted

    async def cache_trusted(self) -> bool:
        return self._interrupted is None or not await self._interrupted()

    async def obtain(self) -> DeviceIdentity:
        hub, device_id, substatus = await self._register()
        return DeviceIdentity("dps", hub, device_id, time.time(), substatus)
