"""Daemon service "certs": runs the `CertificateService` once the key service is ready.

Others reach it with `wait_ready()` (waits) or `current()` (never waits).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from firmware.certs.policy import policy_from_config
from firmware.config.schema import Config
from firmware.errors import Unavailable
from firmware.executor import BoundedExecutor
from firmware.keys.service import KeyService
from firmware.logs import get_logger

if TYPE_CHECKING:
    from firmware.certs.service import CertificateService

log = get_logger("certs")


class CertificatesService:
    """The certificate service under the daemon's supervisor."""

    name = "certs"

    def __init__(
        self,
        config: Config,
        keys: Callable[[], Awaitable[KeyService]],
        executor: BoundedExecutor,
    ) -> None:
        self._config = config
        self._keys = keys
        self._executor = executor
        self.certs: CertificateService | None = None
        self._ready = asyncio.Event()

    async def prepare(self) -> None:
        """Nothing to acquire: the certificates need the key service, which starts in `run`."""

    async def run(self) -> None:
        keys = await self._keys()
        # Deferred: the service starts once the key service is ready, never on the way to READY;
        # it imports cryptography only when a certificate is first issued or checked.
        from firmware.certs.service import CertificateService

        certs = CertificateService(keys, policy_from_config(self._config), self._executor)
        try:
            await certs.start()
            self.certs = certs
            self._ready.set()
            log.info("certificate service ready")
            await asyncio.Event().wait()
        finally:
            self._ready.clear()
            await certs.stop()

    async def wait_ready(self) -> CertificateService:
        """The certificate service once it has started."""
        await self._ready.wait()
        assert self.certs is not None
        return self.certs

    def current(self) -> CertificateService:
        """The certificate service if it is ready now; `Unavailable` otherwise (never waits)."""
        if self.certs is None or not self._ready.is_set():
            raise Unavailable(
                "the certificate service is not ready (waiting for the key service or the Edge CA)",
                hint="see `edgekeeper status` and the daemon log",
            )
        return self.certs

    def describe(self) -> dict[str, object]:
        if self.certs is None:
            return {"ready": False}
        return {"ready": self._ready.is_set(), **self.certs.describe()}
