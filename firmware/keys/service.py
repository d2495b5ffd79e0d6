"""`KeyService`: the async key API the rest of edgekeeper uses, in handles only.

Every backend call runs through the executor (`await executor.run(fn, *args)`), never on the event
loop. Callers name keys once (create, load, import) and get an opaque `KeyHandle`; every other
operation takes a handle, which is verified first (see `firmware.keys.handles`).

Derived keys: `derive(parent, label)` returns a handle for the child HMAC key
HMAC-SHA256(parent, label), computed by the parent's backend; a derived handle may derive further
(each step HMAC-SHA256(previous, label) in memory). The child's 32 bytes sign HMAC-SHA256 and
encrypt/decrypt AES-256-GCM; callers derive one child per purpose, each with its own label (as
`firmware.identity.modules` does for a module's signing and encryption keys), and give `encrypt`
a fresh nonce every time. They are kept in a small bounded in-memory cache, so a module's
requests do not each cross the executor to the parent's device; they are never stored or logged,
and are dropped when the parent key is deleted or replaced. The same parent and labels give the
same child across restarts.

Where keys live: each key's backend is kept in the location record (`KeyLocations`), written when
the key is made, imported or moved and dropped when it is deleted. An existing key is always
reached in its recorded backend (a handle's backend too may be out of date after a move: the record
wins); `[keys] default_backend` and `[keys.backends]` only say where a *new* key is made. A
recorded backend that cannot be reached fails the key's operations with that backend's error (the
service is degraded), and nothing is ever made elsewhere in its place. A key the configuration now
names another backend for is logged once at WARNING with the command that moves it. On the first
start of an install made before the record existed the service adopts the keys it finds in every
backend it can open (see `_adopt`).
"""

from __future__ import annotations

import builtins
import enum
import hmac
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, ParamSpec, Protocol, TypeVar

from firmware.errors import DeviceError, EdgekeeperError, Unavailable
from firmware.keys import software
from firmware.keys.backend import BackendInfo, KeyBackend, KeyInfo, KeyKind, SignAlgorithm
from firmware.keys.errors import KeyBackendUnavailable, KeyKindMismatch, KeyNotFound, ReservedKey
from firmware.keys.handles import (
    HANDLE_VALIDATION_KEY,
    HandleAuthority,
    HandlePayload,
    KeyHandle,
    new_payload,
)
from firmware.keys.inflight import CallsInFlight
from firmware.keys.locations import KeyLocations, moving_advice
from firmware.keys.names import validate_key_name
from firmware.keys.registry import BackendRegistry

if TYPE_CHECKING:
    from firmware.keys.tpm.attestation import TpmAttestation

log = logging.getLogger(__name__)

T = TypeVar("T")
P = ParamSpec("P")


class Executor(Protocol):
    """What the service needs of the daemon's `BoundedExecutor`: blocking calls run off the loop."""

    async def run(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T: ...


@dataclass(frozen=True)
class BackendProblem:
    """A backend that could not be used, with the rendered error and the recorded keys it holds
    (which cannot be used until it is back)."""

    backend: str
    message: str
    keys: tuple[str, ...] = ()


class Placement(enum.Enum):
    """How a key a backend holds stands in the location record."""

    RECORDED = "recorded"  # the record names this backend: the copy in use
    ORPHAN = "orphan"  # the record names another backend: a copy nothing uses
    UNRECORDED = "unrecorded"  # nothing records this key (its backend was not searched yet)


@dataclass(frozen=True, kw_only=True)
class ListedKey(KeyInfo):
    """A key as `keys list` shows it: where it is, where the record puts it, where config would
    make a new one."""

    placement: Placement
    recorded: str | None
    configured: str
    movable: bool

    @property
    def advice(self) -> str | None:
        """What to do when config names another backend for this recorded key, else None."""
        if self.placement is not Placement.RECORDED or self.configured == self.backend:
            return None
        return moving_advice(self.key_id, self.backend, self.configured, self.movable)

    @property
    def note(self) -> str:
        """One line on where this copy stands, for people."""
        if self.placement is Placement.ORPHAN:
            return f"not recorded: orphan copy (the key in use is in {self.recorded})"
        if self.placement is Placement.UNRECORDED:
            return "not recorded"
        if self.configured != self.backend:
            return f"recorded here; config names {self.configured} for new keys"
        return "recorded here"


@dataclass(frozen=True)
class KeyListing:
    """Every key of every reachable backend, and the backends that could not be reached."""

    keys: tuple[ListedKey, ...]
    unavailable: tuple[BackendProblem, ...]


@dataclass(frozen=True)
class MovedKey:
    """A recorded key that configuration now names another backend for (new keys only)."""

    key_id: str
    recorded: str
    configured: str
    movable: bool

    def advice(self) -> str:
        where = (
            f"key {self.key_id} lives in backend {self.recorded}; [keys] now names "
            f"{self.configured} for new keys"
        )
        return (
            f"{where}; {moving_advice(self.key_id, self.recorded, self.configured, self.movable)}"
        )


class KeyService:
    """Keys in every configured backend, reached through verified handles."""

    def __init__(
        self,
        registry: BackendRegistry,
        executor: Executor,
        *,
        locations: KeyLocations | None = None,
        handle_cache_size: int = 1024,
        derived_cache_size: int = 256,
    ) -> None:
        """`locations` is the location record (the daemon's lives in its state store); None keeps
        one in memory only, so every start adopts the keys the backends hold."""
        self._registry = registry
        self._in_flight = CallsInFlight()
        self._taken: ContextVar[BackendRegistry | None] = ContextVar("taken", default=None)
        self._executor = executor
        self._locations = locations if locations is not None else KeyLocations(None)
        self._derived: OrderedDict[tuple[str, str, tuple[bytes, ...]], bytes] = OrderedDict()
        self._derived_cache_size = derived_cache_size
        self._handles = HandleAuthority(self._validation_mac, cache_size=handle_cache_size)
        self._down: dict[str, str] = {}
        self._warned: set[MovedKey] = set()

    @property
    def default_backend(self) -> str:
        return self._registry.default

    @property
    def locations(self) -> KeyLocations:
        """The location record: key name -> the backend that holds it."""
        return self._locations

    async def start(self) -> None:
        """Read the location record (adopting the keys of an install made before it), make sure
        the handle-validation key exists, and warn about keys config now names elsewhere."""
        await self._run(self._locations.load)
        if not self._locations.stored:
            others = await self._run(self._registry.may_hold_keys)
            await self._adopt(self._listable(), unsearched=(), also=others)
        elif pending := self._locations.unsearched():
            await self._adopt(pending, unsearched=pending)
        await self._start_validation_key()
        self.warn_moved_keys()

    def warn_moved_keys(self) -> None:
        """Log once, at WARNING, each recorded key configuration now names another backend for."""
        for moved in self.moved_keys():
            self._warn_moved(moved)

    async def close(self) -> None:
        await self._run(self._registry.close)

    async def reconfigure(self, registry: BackendRegistry) -> None:
        """Use `registry` from now on (a reload changed [keys] or [tpm]); this object stays.

        Its default backend is opened first: if that fails, `registry` is closed, the error raised
        and nothing has changed. Otherwise the registry is swapped between two calls: a call in
        flight ends on the backends it began with, every later call uses the new ones, and the old
        registry's backends are closed once its last call has ended. Handles issued before stay
        valid and the caches stay: a reload moves no key.
        """
        try:
            await self._run(registry.open, registry.default)
        except BaseException:
            await self._run(registry.close)
            raise
        old, self._registry = self._registry, registry
        await self._in_flight.idle(old)
        await self._run(old.close)

    async def create_key_pair(self, name: str, kind: KeyKind) -> KeyHandle:
        """Create-if-absent an EC P-256 or RSA-2048 pair named `name`."""
        if not kind.asymmetric:
            raise KeyKindMismatch(
                f"{kind.value} is not a key pair kind", hint="use create_key for symmetric keys"
            )
        return await self._create(name, kind)

    async def create_key(self, name: str, kind: KeyKind) -> KeyHandle:
        """Create-if-absent a symmetric HMAC-SHA256 or AES-256 key named `name`."""
        if kind.asymmetric:
            raise KeyKindMismatch(
                f"{kind.value} is a key pair kind", hint="use create_key_pair for key pairs"
            )
        return await self._create(name, kind)

    async def load(self, name: str) -> KeyHandle:
        """A handle for the existing key `name`; `KeyNotFound` if there is none. A key found
        where config names it but not yet recorded is recorded there."""
        key_id, backend_name, backend = await self._named(name)
        await self._guarded(backend_name, backend.info, key_id)
        await self._record(key_id, backend_name)
        return await self._handles.issue(new_payload(key_id, backend_name))

    async def import_key(self, name: str, kind: KeyKind, material: bytes) -> KeyHandle:
        """Store `material` (raw secret, or PKCS#8 DER for pairs) as key `name`, in the backend
        that holds it already, else where config names it."""
        key_id, backend_name, backend = await self._named(name)
        await self._guarded(backend_name, backend.import_key, key_id, kind, material)
        await self._record(key_id, backend_name)
        self._forget_derived(key_id)
        return await self._handles.issue(new_payload(key_id, backend_name))

    async def info(self, handle: KeyHandle | str) -> KeyInfo:
        payload = await self._handles.verify(handle)
        where = self._where(payload)
        if payload.derived:
            return KeyInfo(key_id=payload.key_id, kind=KeyKind.HMAC_SHA256, backend=where)
        backend = await self._backend(where)
        return await self._guarded(where, backend.info, payload.key_id)

    async def public_key(self, handle: KeyHandle | str) -> bytes:
        """DER SubjectPublicKeyInfo of a key pair."""
        payload = await self._stored(handle, "has no public key")
        return await self._keyed(
            payload, lambda backend: partial(backend.public_key, payload.key_id)
        )

    async def sign(self, handle: KeyHandle | str, algorithm: SignAlgorithm, data: bytes) -> bytes:
        payload = await self._handles.verify(handle)
        if payload.derived:
            _check_derived_algorithm(payload, algorithm)
            return hmac.digest(await self._derived_secret(payload), data, "sha256")
        return await self._keyed(
            payload, lambda backend: partial(backend.sign, payload.key_id, algorithm, data)
        )

    async def verify(
        self, handle: KeyHandle | str, algorithm: SignAlgorithm, data: bytes, signature: bytes
    ) -> bool:
        payload = await self._handles.verify(handle)
        if payload.derived:
            _check_derived_algorithm(payload, algorithm)
            expected = hmac.digest(await self._derived_secret(payload), data, "sha256")
            return hmac.compare_digest(expected, signature)
        return await self._keyed(
            payload,
            lambda backend: partial(backend.verify, payload.key_id, algorithm, data, signature),
        )

    async def encrypt(
        self, handle: KeyHandle | str, iv: bytes, aad: bytes, plaintext: bytes
    ) -> bytes:
        """AES-256-GCM: ciphertext followed by the 16-byte tag."""
        payload = await self._handles.verify(handle)
        if payload.derived:
            secret = await self._derived_secret(payload)
            return software.gcm_encrypt(_derived_name(payload), secret, iv, aad, plaintext)
        return await self._keyed(
            payload, lambda backend: partial(backend.encrypt, payload.key_id, iv, aad, plaintext)
        )

    async def decrypt(
        self, handle: KeyHandle | str, iv: bytes, aad: bytes, ciphertext: bytes
    ) -> bytes:
        """AES-256-GCM; `KeyOperationFailed` when the tag does not verify."""
        payload = await self._handles.verify(handle)
        if payload.derived:
            secret = await self._derived_secret(payload)
            return software.gcm_decrypt(_derived_name(payload), secret, iv, aad, ciphertext)
        return await self._keyed(
            payload, lambda backend: partial(backend.decrypt, payload.key_id, iv, aad, ciphertext)
        )

    async def derive(self, parent: KeyHandle | str, label: bytes) -> KeyHandle:
        """A handle for the child HMAC key HMAC-SHA256(parent, label); the parent must be HMAC."""
        payload = await self._handles.verify(parent)
        if not payload.derived:
            where = self._where(payload)
            backend = await self._backend(where)
            info = await self._guarded(where, backend.info, payload.key_id)
            if info.kind is not KeyKind.HMAC_SHA256:
                raise KeyKindMismatch(
                    f"key {payload.key_id!r} is a {info.kind.value} key; only HMAC-SHA256 keys "
                    "can derive",
                    hint="derive from an hmac-sha256 key such as the device identity key",
                )
        labels = (*payload.labels, label)
        return await self._handles.issue(new_payload(payload.key_id, payload.backend, labels))

    async def delete(self, handle: KeyHandle | str) -> None:
        """Delete the key in its recorded backend and drop its record."""
        payload = await self._stored(handle, "is derived and has nothing stored to delete")
        where = self._where(payload)
        backend = await self._backend(where)
        await self._guarded(where, backend.delete, payload.key_id)
        if self._locations.backend_of(payload.key_id) == where:
            await self._run(self._locations.forget, payload.key_id)
        for name in {payload.backend, where}:
            self._handles.forget(payload.key_id, name)
        self._forget_derived(payload.key_id)

    async def list(self) -> KeyListing:
        """Every key every known backend holds (file, the configured, the recorded and any opened
        one), each placed against the record; an unreachable backend is reported with its keys."""
        keys: list[ListedKey] = []
        problems: list[BackendProblem] = []
        recorded = self._locations.items()
        for name in self._backend_names():
            try:
                backend = await self._backend(name)
                infos = await self._guarded(name, backend.list_keys)
            except EdgekeeperError as err:
                log.warning("key backend %s unavailable: %s", name, err.render())
                problems.append(self._problem(name, err))
                continue
            keys += [self._listed(info, recorded.get(info.key_id)) for info in infos]
        return KeyListing(keys=tuple(keys), unavailable=tuple(problems))

    async def describe(self) -> builtins.list[BackendInfo | BackendProblem]:
        """What each known backend is, or why it cannot be used (and which keys that stops)."""
        answers: list[BackendInfo | BackendProblem] = []
        for name in self._backend_names():
            try:
                backend = await self._backend(name)
                answers.append(await self._guarded(name, backend.describe))
            except EdgekeeperError as err:
                answers.append(self._problem(name, err))
        return answers

    def moved_keys(self) -> builtins.list[MovedKey]:
        """Recorded keys that configuration now names another backend for (never waits)."""
        return [
            MovedKey(key_id, recorded, configured, self._exports(recorded))
            for key_id, recorded in sorted(self._locations.items().items())
            if (configured := self._registry.backend_for(key_id)) != recorded
        ]

    def backends_in_use(self) -> builtins.list[str]:
        """The backends the configuration sends keys to (the default and per-key choices)."""
        return self._registry.in_use()

    def backends_down(self) -> dict[str, str]:
        """Backends whose last use failed because they could not be reached: name -> the error
        (never waits; cleared by the next use that succeeds)."""
        return dict(self._down)

    def keys_down(self) -> dict[str, str]:
        """Recorded keys whose backend is down: key name -> backend (never waits)."""
        return {k: b for k, b in self._locations.items().items() if b in self._down}

    async def backend(self, name: str) -> KeyBackend:
        """The backend `name`, opened on first use; its error when it cannot be reached."""
        return await self._backend(name)

    async def tpm_attestation(self, auth_key_index: int) -> TpmAttestation:
        """DPS TPM attestation on this service's TPM connection (a TPM serves one client at a
        time), the auth key at 0x81000000 + `auth_key_index`; the TPM backend is opened if no key
        uses it yet. Ask again for each registration: a reload may replace the backend."""
        from firmware.keys.tpm import TpmBackend  # deferred: tpm2-pytss and tpm2-tss

        backend = await self._backend("tpm")
        if not isinstance(backend, TpmBackend):
            raise KeyBackendUnavailable(
                "the tpm key backend is not a TPM", hint="set [tpm] device to the device's TPM"
            )
        return backend.attestation(auth_key_index)

    async def relocate(self, key_id: str, backend: str) -> None:
        """Record that `key_id` now lives in `backend` (the caller has put an equal copy there)
        and drop what was cached for it; handles issued before stay valid and follow the record."""
        await self._run(self._locations.record, validate_key_name(key_id), backend)
        self._forget_derived(key_id)
        log.info("key %s is now recorded in backend %s", key_id, backend)

    async def _create(self, name: str, kind: KeyKind) -> KeyHandle:
        key_id, backend_name, backend = await self._named(name)
        await self._create_in(key_id, kind, backend_name, backend)
        await self._record(key_id, backend_name)
        return await self._handles.issue(new_payload(key_id, backend_name))

    async def _create_in(
        self, key_id: str, kind: KeyKind, backend_name: str, backend: KeyBackend
    ) -> None:
        """Create-if-absent in `backend`; say loudly when a recorded key was gone from it."""
        made = await self._guarded(backend_name, _create_if_absent, backend, key_id, kind)
        if made and self._locations.backend_of(key_id) == backend_name:
            log.warning(
                "key %s is recorded in backend %s, which no longer held it: made a new %s key "
                "there; whatever the old key signed or sealed no longer verifies or opens",
                key_id,
                backend_name,
                kind.value,
            )

    async def _named(self, name: str) -> tuple[str, str, KeyBackend]:
        key_id = validate_key_name(name)
        if key_id == HANDLE_VALIDATION_KEY:
            raise ReservedKey(
                f"key {key_id!r} is reserved for the key service", hint="use another key name"
            )
        backend_name = self._resolve(key_id)
        return key_id, backend_name, await self._backend(backend_name)

    def _resolve(self, key_id: str) -> str:
        """The recorded backend of `key_id`, else (a new key) the one config names."""
        configured = self._registry.backend_for(key_id)
        recorded = self._locations.backend_of(key_id)
        if recorded is None:
            return configured
        if recorded != configured:
            self._warn_moved(MovedKey(key_id, recorded, configured, self._exports(recorded)))
        return recorded

    def _where(self, payload: HandlePayload) -> str:
        """The backend a verified handle's key is in: the record's (after a move the handle's own
        may be out of date), else the handle's."""
        return self._locations.backend_of(payload.key_id) or payload.backend

    def _warn_moved(self, moved: MovedKey) -> None:
        if moved not in self._warned:
            self._warned.add(moved)
            log.warning(moved.advice())

    async def _record(self, key_id: str, backend: str) -> None:
        if self._locations.backend_of(key_id) != backend:
            await self._run(self._locations.record, key_id, backend)

    def _listed(self, info: KeyInfo, recorded: str | None) -> ListedKey:
        if recorded is None:
            placement = Placement.UNRECORDED
        elif recorded == info.backend:
            placement = Placement.RECORDED
        else:
            placement = Placement.ORPHAN
        return ListedKey(
            key_id=info.key_id,
            kind=info.kind,
            backend=info.backend,
            placement=placement,
            recorded=recorded,
            configured=self._registry.backend_for(info.key_id),
            movable=self._exports(info.backend),
        )

    def _exports(self, backend: str) -> bool:
        """Whether `backend` (if open) gives its keys' material, so `keys migrate` can move them."""
        opened = self._registry.opened(backend)
        return opened is not None and opened.exports_keys

    def _problem(self, name: str, err: EdgekeeperError) -> BackendProblem:
        held = tuple(sorted(k for k, b in self._locations.items().items() if b == name))
        return BackendProblem(backend=name, message=err.render(), keys=held)

    # --- the handle-validation key and adoption ----------------------------------------------

    async def _start_validation_key(self) -> None:
        """Use the recorded handle-validation key; make one only where there is none anywhere.

        Without a record (adoption found it nowhere) it is made in the backend config names,
        once that backend was searched; if it cannot be, that backend's error is raised and the
        service is not ready. A recorded one that its backend no longer holds is made again
        there, with a WARNING: every handle issued before stops verifying.
        """
        key_id, kind = HANDLE_VALIDATION_KEY, KeyKind.HMAC_SHA256
        target = self._registry.backend_for(key_id)
        if self._locations.backend_of(key_id) is None and target in self._locations.unsearched():
            await self._backend(target)  # still out of reach: its error, the service not ready
            await self._adopt([target], unsearched=self._locations.unsearched())
        recorded = self._locations.backend_of(key_id)
        if recorded is not None:
            await self._create_in(key_id, kind, recorded, await self._backend(recorded))
            return
        backend = await self._backend(target)
        await self._guarded(target, backend.create, key_id, kind)
        await self._record(key_id, target)
        log.info("made the handle-validation key in backend %s", target)

    def _listable(self) -> builtins.list[str]:
        """File and the configured backends: those `keys list` always shows."""
        names = ["file", *self._registry.configured()]
        return [n for n in dict.fromkeys(names) if n in self._registry.known()]

    async def _adopt(
        self, backends: Iterable[str], *, unsearched: Iterable[str], also: Iterable[str] = ()
    ) -> None:
        """Record the keys `backends` and `also` hold (an install made before the record, or
        backends that could not be searched then): a key several backends hold is recorded in the
        one config names, else in file, else the first searched, with a WARNING naming the
        copies. One of `backends` that cannot be opened is logged and searched again at the next
        start; one of `also` (not configured now) is logged and left."""
        holders: dict[str, builtins.list[str]] = {}
        pending = set(unsearched)
        required = list(dict.fromkeys(backends))
        optional = [name for name in dict.fromkeys(also) if name not in required]
        for name in required + optional:
            try:
                backend = await self._backend(name)
                # Only a backend keys are made in is marked down when it cannot be reached; one
                # searched for keys of an earlier config (`also`) is merely not searched.
                listing = self._guarded if name in required else self._unguarded
                infos = await listing(name, backend.list_keys)
            except EdgekeeperError as err:
                if name in required:
                    log.warning(
                        "key backend %s could not be searched for existing keys (searched "
                        "again at the next start): %s",
                        name,
                        err.render(),
                    )
                    pending.add(name)
                else:
                    log.info(
                        "key backend %s not searched for existing keys: %s", name, err.render()
                    )
                continue
            pending.discard(name)
            for info in infos:
                holders.setdefault(info.key_id, []).append(name)
        recorded = self._locations.items()
        chosen: dict[str, str] = {}
        for key_id, found in sorted(holders.items()):
            where = recorded.get(key_id) or self._preferred(key_id, found)
            chosen[key_id] = where
            copies = sorted(set(found) | {where})
            if len(copies) > 1:
                log.warning(
                    "key %s is held by backends %s: using the copy in %s; the others are not "
                    "used (see `edgekeeper keys list`)",
                    key_id,
                    ", ".join(copies),
                    where,
                )
        await self._run(partial(self._locations.record_all, chosen, unsearched=pending))
        log.info("adopted %d existing keys into the location record", len(chosen))

    def _preferred(self, key_id: str, found: builtins.list[str]) -> str:
        for choice in (self._registry.backend_for(key_id), "file"):
            if choice in found:
                return choice
        return found[0]

    async def _stored(self, handle: KeyHandle | str, derived_problem: str) -> HandlePayload:
        payload = await self._handles.verify(handle)
        if payload.derived:
            raise KeyKindMismatch(f"derived key of {payload.key_id!r} {derived_problem}")
        return payload

    async def _derived_secret(self, payload: HandlePayload) -> bytes:
        where = self._where(payload)
        cache_key = (where, payload.key_id, tuple(payload.labels))
        secret = self._derived.get(cache_key)
        if secret is not None:
            self._derived.move_to_end(cache_key)
            return secret
        backend = await self._backend(where)
        first, *rest = payload.labels
        secret = await self._guarded(
            where, backend.sign, payload.key_id, SignAlgorithm.HMAC_SHA256, first
        )
        for label in rest:
            secret = hmac.digest(secret, label, "sha256")
        self._derived[cache_key] = secret
        if len(self._derived) > self._derived_cache_size:
            self._derived.popitem(last=False)
        return secret

    def _forget_derived(self, key_id: str) -> None:
        for cached in [k for k in self._derived if k[1] == key_id]:
            del self._derived[cached]

    async def _validation_mac(self, data: bytes) -> bytes:
        where = self._locations.backend_of(HANDLE_VALIDATION_KEY) or self._registry.default
        backend = await self._backend(where)
        return await self._guarded(
            where, backend.sign, HANDLE_VALIDATION_KEY, SignAlgorithm.HMAC_SHA256, data
        )

    async def _backend(self, name: str) -> KeyBackend:
        """Backend `name` of the registry in force. The calling task's later `_run` calls count
        against that registry (`_taken`), which `reconfigure` closes only once they have ended."""
        while True:
            registry = self._registry
            self._taken.set(registry)
            backend = registry.opened(name)
            if backend is None:
                backend = await self._guarded(name, registry.open, name)
            if registry is self._registry:
                return backend

    async def _keyed(
        self, payload: HandlePayload, use: Callable[[KeyBackend], Callable[[], T]]
    ) -> T:
        """`use(backend)()` on the backend that holds the payload's key; once more on the new one
        when `keys migrate` moved the key between the lookup and the call (the old copy gone)."""
        where = self._where(payload)
        try:
            return await self._guarded(where, use(await self._backend(where)))
        except KeyNotFound:
            moved = self._where(payload)
            if moved == where:
                raise
            return await self._guarded(moved, use(await self._backend(moved)))

    async def _unguarded(self, backend: str, fn: Callable[[], T]) -> T:
        """`_run` a call on `backend` without noting whether the backend could be reached."""
        return await self._run(fn)

    async def _guarded(
        self, backend: str, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """`_run` a call on `backend`, noting whether the backend could be reached."""
        try:
            result = await self._run(fn, *args, **kwargs)
        except (DeviceError, Unavailable) as err:
            if backend not in self._down:
                log.warning("key backend %s is down: %s", backend, err.render())
            self._down[backend] = err.render()
            raise
        if self._down.pop(backend, None) is not None:
            log.warning("key backend %s is reachable again", backend)
        return result

    def _backend_names(self) -> builtins.list[str]:
        """File, the configured and set-up backends, every recorded one, and any opened."""
        recorded = sorted(set(self._locations.items().values()))
        return list(dict.fromkeys([*self._listable(), *recorded, *self._registry.in_use()]))

    async def _run(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        with self._in_flight.call(self._taken.get() or self._registry):
            return await self._executor.run(fn, *args, **kwargs)


def _create_if_absent(backend: KeyBackend, key_id: str, kind: KeyKind) -> bool:
    """Create-if-absent `key_id` (blocking); True when it was not there before."""
    try:
        backend.info(key_id)
    except KeyNotFound:
        backend.create(key_id, kind)
        return True
    backend.create(key_id, kind)  # there already: create checks its kind
    return False


def _check_derived_algorithm(payload: HandlePayload, algorithm: SignAlgorithm) -> None:
    if algorithm is not SignAlgorithm.HMAC_SHA256:
        raise KeyKindMismatch(
            f"{_derived_name(payload)} is an HMAC-SHA256 key and cannot do {algorithm.value}",
            hint="sign with hmac-sha256",
        )


def _derived_name(payload: HandlePayload) -> str:
    return f"derived key of {payload.key_id!r}"
