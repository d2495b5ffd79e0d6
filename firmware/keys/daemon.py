"""Daemon service "keys": runs the `KeyService` built from `[keys]` and `[tpm]`.

`prepare` builds the service (no device I/O, so a missing token or TPM never stops the daemon
from starting); `run` creates the handle-validation key in the default backend and marks the
service ready. Others reach the key service with `wait_ready()` (waits) or `current()` (never
waits).
"""

from __future__ import annotations

import asyncio

from firmware.config.schema import Config
from firmware.errors import Unavailable
from firmware.executor import BoundedExecutor
from firmware.keys.registry import registry_from_config
from firmware.keys.service import KeyService
from firmware.logs import get_logger

log = get_logger("keys")


class KeysService:
    """The key service under the daemon's supervisor."""

    name = "keys"

    def __init__(self, config: Config, executor: BoundedExecutor) -> None:
        self._config = config
        self._executor = executor
        self.keys: KeyService | None = None
        self._ready = asyncio.Event()

    async def prepare(self) -> None:
        self.keys = KeyService(registry_from_config(self._config), self._executor)

    async def run(self) -> None:
        if self.keys is None:
            await self.prepare()
        keys = self.keys
        assert keys is not None
        try:
            await keys.start()
            log.info("key service ready (default backend %s)", keys.default_backend)
            self._ready.set()
            await asyncio.Event().wait()
        finally:
            self._ready.clear()
            await keys.close()

    async def wait_ready(self) -> KeyService:
        """The key service once its default backend has started."""
        await self._ready.wait()
        assert self.keys is not None
        return self.keys

    def current(self) -> KeyService:
        """The key service if it is ready now; `Unavailable` otherwise (never waits)."""
        if self.keys is None or not self._ready.is_set():
            raise Unavailable(
                "the key service is not ready: its default key backend has not started",
                hint="see `edgekeeper status` and the daemon log for the backend's error",
            )
        return self.keys

    def describe(self) -> dict[str, object]:
        backend = self.keys.default_backend if self.keys else None
        return {"ready": self._ready.is_set(), "default_backend": backend}
