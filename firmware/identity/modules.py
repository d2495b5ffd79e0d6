"""`ModuleIdentities`: module identities kept in the state store and, once the device has a hub,
on the hub too; keys derived in the key service.

Each module identity has a generation id and three symmetric keys, children of the device's
master identity key `device-identity` (HMAC-SHA256, created in the key service when absent), one
per purpose so that no key serves two:

- primary, what `sign` uses for SAS tokens, and what the hub holds for the module:
  HMAC-SHA256(master, "{moduleId}:{generationId}:primary"), IoT Edge's derivation data;
- secondary, `sign` with keyId "secondary": the same with ":secondary";
- encryption, `encrypt`/`decrypt` (AES-256-GCM, see `firmware.identity.sealed`):
  HMAC-SHA256(master, "edgekeeper module encryption" 0 module id 0 generation id).

No two labels are equal (the encryption label starts with a NUL-terminated prefix no module id
holds), and no key is computed from another, so a module's signatures reveal nothing of its
encryption key. A new generation (the identity deleted and created again) gets new keys. Keys
never leave the key service except the two SAS keys, which go to the hub once, as IoT Edge does.

With a hub (`ModuleCloud`), an identity is made as IoT Edge makes it: created on the hub (which
picks the generation id), then given its two keys with `If-Match: *`, then recorded here. Before
each create or delete on the hub the intent is recorded; `recover()` at the next start deletes
what a killed create may have left on the hub, so no orphan identity stays there.
"""

from __future__ import annotations

import asyncio
import enum
import hmac
import logging
import secrets
from typing import TYPE_CHECKING, Literal, Protocol, TypeAlias

from firmware.errors import Conflict, Unavailable
from firmware.identity import sealed
from firmware.identity.errors import IdentityExists, IdentityNotFound
from firmware.identity.model import (
    DEFAULT_MANAGER,
    ModuleIdentity,
    check_module_id,
    is_system_identity,
    new_generation_id,
)
from firmware.keys.backend import KeyKind, SignAlgorithm

if TYPE_CHECKING:
    from firmware.executor import RunBlocking
    from firmware.keys.handles import KeyHandle
    from firmware.keys.service import KeyService
    from firmware.store.state import StateStore

log = logging.getLogger("edgekeeper.identity")

MASTER_KEY = "device-identity"
STATE_NAME = "module-identities"


class ModuleKey(enum.Enum):
    """The keys of a module identity, one per purpose."""

    PRIMARY = "primary"
    SECONDARY = "secondary"
    ENCRYPTION = "encryption"


_ENCRYPTION_PREFIX = b"edgekeeper module encryption\x00"
SigningKey: TypeAlias = Literal[ModuleKey.PRIMARY, ModuleKey.SECONDARY]
#: The keys `sign` uses, by the workload API's keyId.
SIGNING_KEYS: dict[str, SigningKey] = {
    "primary": ModuleKey.PRIMARY,
    "secondary": ModuleKey.SECONDARY,
}


def derivation_label(
    module_id: str, generation_id: str, key: ModuleKey = ModuleKey.PRIMARY
) -> bytes:
    """The derivation data of one of a module's keys (purpose, module id and generation id)."""
    if key is ModuleKey.ENCRYPTION:
        return _ENCRYPTION_PREFIX + module_id.encode() + b"\x00" + generation_id.encode()
    return f"{module_id}:{generation_id}:{key.value}".encode()


class ModuleCloud(Protocol):
    """The device's module identities on its hub (`firmware.identity.hub_modules`)."""

    async def create(self, module_id: str, managed_by: str) -> str:
        """Create the identity (or find the one there) and return its generation id."""
        ...

    async def set_keys(
        self, module_id: str, primary: bytes, secondary: bytes, managed_by: str
    ) -> None: ...

    async def delete(self, module_id: str) -> None:
        """Delete the identity; one that is not there is fine."""
        ...

    async def generations(self) -> dict[str, str]:
        """Module id -> generation id of every module identity of the device on the hub."""
        ...


class ModuleIdentities:
    """The module identities of this device.

    `keys` is the `KeyService`; `store` a `StateStore`; `run_blocking(fn, *args)` runs the store's
    blocking calls off the loop (the daemon's executor); `cloud` the hub's side, None while the
    device has no hub (`[provisioning] source = "none"`): then generation ids are made here.
    """

    def __init__(
        self,
        keys: KeyService,
        store: StateStore,
        run_blocking: RunBlocking,
        cloud: ModuleCloud | None = None,
    ) -> None:
        self._keys = keys
        self._store = store
        self._run_blocking = run_blocking
        self._cloud = cloud
        self._identities: dict[str, ModuleIdentity] = {}
        self._pending: dict[str, str] = {}
        self._master: KeyHandle | None = None
        self._handles: dict[tuple[str, str, ModuleKey], KeyHandle] = {}
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        """Create the master identity key if absent and load the stored identities."""
        self._master = await self._keys.create_key(MASTER_KEY, KeyKind.HMAC_SHA256)
        doc = await self._run_blocking(self._store.get, STATE_NAME) or {}
        self._identities = {
            entry["moduleId"]: ModuleIdentity.from_document(entry)
            for entry in doc.get("identities", [])
        }
        self._pending = {str(k): str(v) for k, v in (doc.get("pending") or {}).items()}
        log.info("module identities loaded: %d", len(self._identities))

    @property
    def pending(self) -> dict[str, str]:
        """Hub changes a killed daemon may have left half done: module id -> "create"/"delete"."""
        return dict(self._pending)

    async def recover(self) -> None:
        """Finish what a killed daemon left half done on the hub: an identity whose create was
        not recorded here is deleted there (the module gets a new one when it is created), a
        delete is done again. Needs the hub; leaves the intents in place if it fails."""
        cloud = self._require_cloud()
        async with self._lock:
            for module_id, intent in sorted(self._pending.items()):
                if intent == "delete" or module_id not in self._identities:
                    await cloud.delete(module_id)
                    log.info("module identity cleaned up on the hub: %s", module_id)
                await self._save(self._identities, {**self._pending, module_id: ""})

    async def reconcile(self) -> None:
        """Make the hub hold every identity recorded here with the same generation and keys (after
        provisioning, or when the hub may have lost them): missing ones are created, other
        generations adopted, and the keys set again."""
        cloud = self._require_cloud()
        async with self._lock:
            on_hub = await cloud.generations()
            for module_id, identity in sorted(self._identities.items()):
                generation = on_hub.get(module_id)
                if generation is None:
                    generation = await cloud.create(module_id, identity.managed_by)
                if generation != identity.generation_id:
                    identity = ModuleIdentity(module_id, generation, identity.managed_by)
                    await self._save({**self._identities, module_id: identity}, self._pending)
                await self._set_hub_keys(cloud, identity)
        log.info("module identities reconciled with the hub: %d", len(self._identities))

    async def clear(self) -> None:
        """Forget every identity (the device moved to another hub or device id)."""
        async with self._lock:
            await self._save({}, {})
            self._handles.clear()
        log.warning("module identities cleared: the device has a new hub or device id")

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

    def at_generation(self, module_id: str, generation_id: str) -> ModuleIdentity:
        """The identity of `module_id` if `generation_id` is its current generation;
        `IdentityNotFound` otherwise."""
        identity = self.get(module_id)
        if not hmac.compare_digest(identity.generation_id.encode(), generation_id.encode()):
            raise IdentityNotFound(
                f"module {module_id!r} has no identity of generation {generation_id!r}",
                hint="use the generation id in IOTEDGE_MODULEGENERATIONID",
            )
        return identity

    async def create(self, module_id: str, managed_by: str = DEFAULT_MANAGER) -> ModuleIdentity:
        """A new identity with a new generation id; `IdentityExists` if there is one."""
        check_module_id(module_id)
        async with self._lock:
            if module_id in self._identities:
                raise IdentityExists(
                    f"module identity {module_id!r} exists already",
                    hint="update it with PUT /identities/{name} or delete it first",
                )
            if self._cloud is None:
                identity = ModuleIdentity(module_id, new_generation_id(), managed_by)
            else:
                identity = await self._create_on_hub(self._cloud, module_id, managed_by)
            await self._save({**self._identities, module_id: identity}, self._done(module_id))
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
            if self._cloud is not None and managed_by != current.managed_by:
                await self._set_hub_keys(self._cloud, identity)
            await self._save({**self._identities, module_id: identity}, self._pending)
        return identity

    async def delete(self, module_id: str) -> None:
        """Delete a module identity, on the hub too; a system identity (`$edgeAgent`, `$edgeHub`)
        belongs to the device and is refused (`Conflict`)."""
        if is_system_identity(module_id):
            raise Conflict(
                f"module identity {module_id!r} belongs to the device; it cannot be deleted",
                hint="the hub makes $edgeAgent and $edgeHub with an IoT Edge device",
            )
        async with self._lock:
            current = self.get(module_id)
            remaining = {k: v for k, v in self._identities.items() if k != module_id}
            if self._cloud is not None:
                await self._save(self._identities, {**self._pending, module_id: "delete"})
                await self._cloud.delete(module_id)
            await self._save(remaining, self._done(module_id))
            for key in ModuleKey:
                self._handles.pop((module_id, current.generation_id, key), None)
        log.info("module identity deleted: %s", module_id)

    async def _create_on_hub(
        self, cloud: ModuleCloud, module_id: str, managed_by: str
    ) -> ModuleIdentity:
        await self._save(self._identities, {**self._pending, module_id: "create"})
        generation = await cloud.create(module_id, managed_by)
        identity = ModuleIdentity(module_id, generation, managed_by)
        await self._set_hub_keys(cloud, identity)
        return identity

    async def _set_hub_keys(self, cloud: ModuleCloud, identity: ModuleIdentity) -> None:
        primary = await self._key_value(identity, ModuleKey.PRIMARY)
        secondary = await self._key_value(identity, ModuleKey.SECONDARY)
        await cloud.set_keys(identity.module_id, primary, secondary, identity.managed_by)

    async def _key_value(self, identity: ModuleIdentity, key: SigningKey) -> bytes:
        """The value of a SAS key, for the hub: HMAC-SHA256(master, label)."""
        label = derivation_label(identity.module_id, identity.generation_id, key)
        return await self._keys.sign(self._require_master(), SignAlgorithm.HMAC_SHA256, label)

    def _done(self, module_id: str) -> dict[str, str]:
        return {k: v for k, v in self._pending.items() if k != module_id}

    def _require_cloud(self) -> ModuleCloud:
        if self._cloud is None:
            raise Unavailable(
                "module identities are local: the device has no hub",
                hint="set [provisioning] source to manual or dps",
            )
        return self._cloud

    def _require_master(self) -> KeyHandle:
        if self._master is None:
            raise Unavailable(
                "module identity keys are not available yet (the master key is not loaded)",
                hint="wait until the workload service has started",
            )
        return self._master

    async def key(
        self, module_id: str, generation_id: str, key: ModuleKey = ModuleKey.PRIMARY
    ) -> KeyHandle:
        """The handle of `key` of `module_id` at `generation_id`; `IdentityNotFound` when the
        module has no identity or another generation (never another module's key)."""
        self.at_generation(module_id, generation_id)
        cached = self._handles.get((module_id, generation_id, key))
        if cached is not None:
            return cached
        label = derivation_label(module_id, generation_id, key)
        handle = await self._keys.derive(self._require_master(), label)
        self._handles[(module_id, generation_id, key)] = handle
        return handle

    async def sign(self, module_id: str, generation_id: str, key: SigningKey, data: bytes) -> bytes:
        """HMAC-SHA256 of `data` with the module's primary or secondary key."""
        handle = await self.key(module_id, generation_id, key)
        return await self._keys.sign(handle, SignAlgorithm.HMAC_SHA256, data)

    async def encrypt(
        self, module_id: str, generation_id: str, iv: bytes, plaintext: bytes
    ) -> bytes:
        """`plaintext` sealed with the module's encryption key under a fresh random nonce, bound
        to `iv`: nonce ‖ ciphertext ‖ tag (see `firmware.identity.sealed`)."""
        handle = await self.key(module_id, generation_id, ModuleKey.ENCRYPTION)
        nonce = secrets.token_bytes(sealed.NONCE_BYTES)
        ciphertext = await self._keys.encrypt(handle, nonce, sealed.associated_data(iv), plaintext)
        return nonce + ciphertext

    async def decrypt(self, module_id: str, generation_id: str, iv: bytes, blob: bytes) -> bytes:
        """The plaintext of a blob `encrypt` returned for this module, generation and `iv`;
        `KeyOperationFailed` when any of them differs or the blob was altered."""
        nonce, ciphertext = sealed.split(blob)
        handle = await self.key(module_id, generation_id, ModuleKey.ENCRYPTION)
        return await self._keys.decrypt(handle, nonce, sealed.associated_data(iv), ciphertext)

    async def _save(self, identities: dict[str, ModuleIdentity], pending: dict[str, str]) -> None:
        pending = {k: v for k, v in pending.items() if v}
        doc: dict[str, object] = {
            "identities": [identities[name].document() for name in sorted(identities)]
        }
        if pending:
            doc["pending"] = pending
        await self._run_blocking(self._store.put, STATE_NAME, doc)
        self._identities, self._pending = identities, pending
