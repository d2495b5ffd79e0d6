"""`ModuleIdentities`: module identities kept in the state store, keys derived in the key service.

Each module identity has a generation id and a symmetric identity key, the child of the device's
master identity key `device-identity` (HMAC-SHA256, created in the key service when absent):
HMAC-SHA256(master, "edgekeeper module identity" 0 module id 0 generation id). A new generation
(the identity deleted and created again) therefore gets a new key, and the key never leaves the
key service: callers get a `KeyHandle`. Identities persist as one state document; until
provisioning to a hub lands they are local.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from typing import TYPE_CHECKING

from firmware.errors import Unavailable
from firmware.identity.errors import IdentityExists, IdentityNotFound
from firmware.identity.model import (
    DEFAULT_MANAGER,
    ModuleIdentity,
    check_module_id,
    new_generation_id,
)
from firmware.keys.backend import KeyKind

if TYPE_CHECKING:
    from firmware.executor import RunBlocking
    from firmware.keys.handles import KeyHandle
    from firmware.keys.service import KeyService
    from firmware.store.state import StateStore

log = logging.getLogger("edgekeeper.identity")

MASTER_KEY = "device-identity"
STATE_NAME = "module-identities"
_LABEL_PREFIX = b"edgekeeper module identity\x00"


def derivation_label(module_id: str, generation_id: str) -> bytes:
    """The derivation data of a module's identity key (module id and generation id)."""
    return _LABEL_PREFIX + module_id.encode() + b"\x00" + generation_id.encode()


class ModuleIdentities:
    """The module identities of this device.

    `keys` is the `KeyService`; `store` a `StateStore`; `run_blocking(fn, *args)` runs the store's
    blocking calls off the loop (the daemon's executor).
    """

    def __init__(self, keys: KeyService, store: StateStore, run_blocking: RunBlocking) -> None:
        self._keys = keys
        self._store = store
        self._run_blocking = run_blocking
        self._identities: dict[str, ModuleIdentity] = {}
        self._master: KeyHandle | None = None
        self._handles: dict[tuple[str, str], KeyHandle] = {}
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        """Create the master identity key if absent and load the stored identities."""
        self._master = await self._keys.create_key(MASTER_KEY, KeyKind.HMAC_SHA256)
        doc = await self._run_blocking(self._store.get, STATE_NAME) or {}
        self._identities = {
            entry["moduleId"]: ModuleIdentity.from_document(entry)
            for entry in doc.get("identities", [])
        }
        log.info("module identities loaded: %d", len(self._identities))

    def list(self) -> list[ModuleIdentity]:
        return [self._identities[name] for name in sorted(self._identities)]

    def get(self, module_id: str) -> ModuleIdentity:
        try:
            return self._identities[module_id]
        except KeyError:
            raise IdentityNotFound(
                f"no module identity {module_id!r}",
                hint="`edgekeeper identity list` shows them; POST /identities creates one",
            ) from None

    async def create(self, module_id: str, managed_by: str = DEFAULT_MANAGER) -> ModuleIdentity:
        """A new identity with a new generation id; `IdentityExists` if there is one."""
        check_module_id(module_id)
        async with self._lock:
            if module_id in self._identities:
                raise IdentityExists(
                    f"module identity {module_id!r} exists already",
                    hint="update it with PUT /identities/{name} or delete it first",
                )
            identity = ModuleIdentity(module_id, new_generation_id(), managed_by)
            await self._save({**self._identities, module_id: identity})
        log.info("module identity created: %s", module_id)
        return identity

    async def ensure(self, module_id: str, managed_by: str = DEFAULT_MANAGER) -> ModuleIdentity:
        """The identity of `module_id`, created when it has none (what the runtime hook uses)."""
        try:
            return self.get(module_id)
        except IdentityNotFound:
            pass
        try:
            return await self.create(module_id, managed_by)
        except IdentityExists:
            return self.get(module_id)

    async def update(
        self, module_id: str, managed_by: str, generation_id: str | None = None
    ) -> ModuleIdentity:
        """Change who manages the identity; a `generation_id` given must be the current one."""
        async with self._lock:
            current = self.get(module_id)
            if generation_id is not None and generation_id != current.generation_id:
                raise IdentityNotFound(
                    f"module identity {module_id!r} has no generation {generation_id!r}",
                    hint="GET /identities shows the current generation id",
                )
            identity = ModuleIdentity(module_id, current.generation_id, managed_by)
            await self._save({**self._identities, module_id: identity})
        return identity

    async def delete(self, module_id: str) -> None:
        async with self._lock:
            current = self.get(module_id)
            remaining = {k: v for k, v in self._identities.items() if k != module_id}
            await self._save(remaining)
            self._handles.pop((module_id, current.generation_id), None)
        log.info("module identity deleted: %s", module_id)

    async def key(self, module_id: str, generation_id: str) -> KeyHandle:
        """The handle of the identity key of `module_id` at `generation_id`; `IdentityNotFound`
        when the module has no identity or another generation (never another module's key)."""
        identity = self.get(module_id)
        if not hmac.compare_digest(identity.generation_id.encode(), generation_id.encode()):
            raise IdentityNotFound(
                f"module {module_id!r} has no identity of generation {generation_id!r}",
                hint="use the generation id in IOTEDGE_MODULEGENERATIONID",
            )
        cached = self._handles.get((module_id, generation_id))
        if cached is not None:
            return cached
        if self._master is None:
            raise Unavailable(
                "module identity keys are not available yet (the master key is not loaded)",
                hint="wait until the workload service has started",
            )
        handle = await self._keys.derive(self._master, derivation_label(module_id, generation_id))
        self._handles[(module_id, generation_id)] = handle
        return handle

    async def _save(self, identities: dict[str, ModuleIdentity]) -> None:
        doc = {"identities": [identities[name].document() for name in sorted(identities)]}
        await self._run_blocking(self._store.put, STATE_NAME, doc)
        self._identities = identities
