"""Daemon service "keys": runs the `KeyService` built from `[keys]` and `[tpm]`.

`prepare` builds the service (no device I/O, so a missing token or TPM never stops the daemon
from starting); `run` reads the key location record from the state store (adopting the keys of
an install made before it), makes sure the handle-validation key exists and marks the service
ready. Others reach the key service with `wait_ready()` (waits) or `current()` (never
waits).

A reload that changes [keys], [tpm] or [paths] calls `reconfigure`: the same `KeyService` goes on
with a registry built from the new config, so whoever holds it (module identities, certificates)
keeps working with the handles it has, and the service is never not ready in between.
"""

from __future__ import annotations

import asyncio

from firmware.config.schema import Config
from firmware.errors import Unavailable
from firmware.executor import BoundedExecutor
from firmware.keys.locations import KeyLocations
from firmware.keys.registry import registry_from_config
from firmware.keys.service import KeyService
from firmware.logs import get_logger
from firmware.store.state import StateStore

log = get_logger("keys")


class KeysService:
    """The key service under the daemon's supervisor."""

    name = "keys"

    def __init__(self, config: Config, executor: BoundedExecutor, store: StateStore) -> None:
        """`store` keeps the key location record (`firmware.keys.locations`)."""
        self._config = config
        self._executor = executor
        self._locations = KeyLocations(store)
        self.keys: KeyService | None = None
        self._ready = asyncio.Event()

    async def prepare(self) -> None:
        self.keys = KeyService(
            registry_from_config(self._config), self._executor, locations=self._locations
        )

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

    async def reconfigure(self, config: Config) -> bool:
        """Apply a new config in place (True); raise, keeping the registry in force, when the new
        one cannot be built or its default backend does not open. Keys stay where they are: those
        the new config names another backend for are logged with the command that moves them."""
        if self.keys is not None:
            await self.keys.reconfigure(registry_from_config(config))
            log.info("key configuration applied (default backend %s)", self.keys.default_backend)
            self.keys.warn_moved_keys()
        self._config = config
        return True

    def describe(self) -> dict[str, object]:
        """Readiness, the default backend, and what is degraded: backends out of reach (with the
        recorded keys they hold) and keys config now names another backend for."""
        keys = self.keys
        if keys is None:
            return {"ready": False, "default_backend": None}
        down = keys.backends_down()
        return {
            "ready": self._ready.is_set(),
            "default_backend": keys.default_backend,
            "tpm": self._config.tpm.device if "tpm" in keys.backends_in_use() else None,
            "degraded": bool(down),
            "backends_down": down,
            "keys_down": keys.keys_down(),
            "keys_elsewhere": [
                {"name": moved.key_id, "backend": moved.recorded, "configured": moved.configured}
                for moved in keys.moved_keys()
            ],
        }
