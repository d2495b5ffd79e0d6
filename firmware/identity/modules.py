"""`ModuleIdentities`: module identities kept in the state store, keys derived in the key service.

Each module identity has a generation id and three symmetric keys, children of the device's
master identity key `device-identity` (HMAC-SHA256, created in the key service when absent), one
per purpose so that no key serves two:

- primary, what `sign` uses for SAS tokens (the hub holds the same key for the module identity):
  HMAC-SHA256(master, "edgekeeper module identity" 0 module id 0 generation id). This derivation
  is the one every deployed module's hub credentials depend on; it never changes.
- secondary, `sign` with keyId "secondary": the same with "edgekeeper module secondary".
- encryption, `encrypt`/`decrypt` (AES-256-GCM, see `firmware.identity.sealed`): the same with
  "edgekeeper module encryption".

The prefixes differ before their first NUL and module ids hold no NUL, so no two labels are
equal; and no key is computed from another, so a module's signatures reveal nothing of its
encryption key. A new generation (the identity deleted and created again) gets new keys. Keys
never leave the key service: callers get a `KeyHandle`. Identities persist as one state
document; until provisioning to a hub lands they are local.
"""

from __future__ import annotations

import asyncio
import enum
import hmac
import logging
import secrets
from typing import TYPE_CHECKING, Literal, TypeAlias

from firmware.errors import Unavailable
from firmware.identity import sealed
from firmware.identity.errors import IdentityExists, IdentityNotFound
from firmware.identity.model import (
    DEFAULT_MANAGER,
    ModuleIdentity,
    check_module_id,
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


_LABEL_PREFIXES = {
    ModuleKey.PRIMARY: b"edgekeeper module identity\x00",
    ModuleKey.SECONDARY: b"edgekeeper module secondary\x00",
    ModuleKey.ENCRYPTION: b"edgekeeper module encryption\x00",
}
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
    return _LABEL_PREFIXES[key] + module_id.encode() + b"\x00" + generation_id.encode()


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
            for key in ModuleKey:
                self._handles.pop((module_id, current.generation_id, key), None)
        log.info("module identity deleted: %s", module_id)

    async def key(
        self, module_id: str, generation_id: str, key: ModuleKey = ModuleKey.PRIMARY
    ) -> KeyHandle:
        """The handle of `key` of `module_id` at `generation_id`; `IdentityNotFound` when the
        module has no identity or another generation (never another module's key)."""
        self.at_generation(module_id, generation_id)
        cached = self._handles.get((module_id, generation_id, key))
        if cached is not None:
            return cached
        if self._master is None:
            raise Unavailable(
                "module identity keys are not available yet (the master key is not loaded)",
                hint="wait until the workload service has started",
            )
        label = derivation_label(module_id, generation_id, key)
        handle = await self._keys.derive(self._master, label)
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

    async def _save(self, identities: dict[str, ModuleIdentity]) -> None:
        doc = {"identities": [identities[name].document() for name in sorted(identities)]}
        await self._run_blocking(self._store.put, STATE_NAME, doc)
        self._identities = identities
