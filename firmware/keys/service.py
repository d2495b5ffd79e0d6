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
"""

from __future__ import annotations

import builtins
import hmac
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import ParamSpec, Protocol, TypeVar

from firmware.errors import EdgekeeperError
from firmware.keys import software
from firmware.keys.backend import BackendInfo, KeyBackend, KeyInfo, KeyKind, SignAlgorithm
from firmware.keys.errors import KeyKindMismatch, ReservedKey
from firmware.keys.handles import (
    HANDLE_VALIDATION_KEY,
    HandleAuthority,
    HandlePayload,
    KeyHandle,
    new_payload,
)
from firmware.keys.names import validate_key_name
from firmware.keys.registry import BackendRegistry

log = logging.getLogger(__name__)

T = TypeVar("T")
P = ParamSpec("P")


class Executor(Protocol):
    """What the service needs of the daemon's `BoundedExecutor`: blocking calls run off the loop."""

    async def run(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T: ...


@dataclass(frozen=True)
class BackendProblem:
    """A configured backend that could not be used, with the rendered error."""

    backend: str
    message: str


@dataclass(frozen=True)
class KeyListing:
    """Every key of every reachable backend, and the backends that could not be reached."""

    keys: tuple[KeyInfo, ...]
    unavailable: tuple[BackendProblem, ...]


class KeyService:
    """Keys in every configured backend, reached through verified handles."""

    def __init__(
        self,
        registry: BackendRegistry,
        executor: Executor,
        *,
        handle_cache_size: int = 1024,
        derived_cache_size: int = 256,
    ) -> None:
        self._registry = registry
        self._executor = executor
        self._derived: OrderedDict[tuple[str, str, tuple[bytes, ...]], bytes] = OrderedDict()
        self._derived_cache_size = derived_cache_size
        self._handles = HandleAuthority(self._validation_mac, cache_size=handle_cache_size)

    @property
    def default_backend(self) -> str:
        return self._registry.default

    async def start(self) -> None:
        """Create the handle-validation key in the default backend if it is not there yet."""
        backend = await self._backend(self._registry.default)
        await self._run(backend.create, HANDLE_VALIDATION_KEY, KeyKind.HMAC_SHA256)

    async def close(self) -> None:
        await self._run(self._registry.close)

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
        """A handle for the existing key `name`; `KeyNotFound` if there is none."""
        key_id, backend_name, backend = await self._named(name)
        await self._run(backend.info, key_id)
        return await self._handles.issue(new_payload(key_id, backend_name))

    async def import_key(self, name: str, kind: KeyKind, material: bytes) -> KeyHandle:
        """Store `material` (raw secret, or PKCS#8 DER for pairs) as key `name`."""
        key_id, backend_name, backend = await self._named(name)
        await self._run(backend.import_key, key_id, kind, material)
        self._forget_derived(backend_name, key_id)
        return await self._handles.issue(new_payload(key_id, backend_name))

    async def info(self, handle: KeyHandle | str) -> KeyInfo:
        payload = await self._handles.verify(handle)
        if payload.derived:
            return KeyInfo(key_id=payload.key_id, kind=KeyKind.HMAC_SHA256, backend=payload.backend)
        backend = await self._backend(payload.backend)
        return await self._run(backend.info, payload.key_id)

    async def public_key(self, handle: KeyHandle | str) -> bytes:
        """DER SubjectPublicKeyInfo of a key pair."""
        payload = await self._stored(handle, "has no public key")
        backend = await self._backend(payload.backend)
        return await self._run(backend.public_key, payload.key_id)

    async def sign(self, handle: KeyHandle | str, algorithm: SignAlgorithm, data: bytes) -> bytes:
        payload = await self._handles.verify(handle)
        if payload.derived:
            _check_derived_algorithm(payload, algorithm)
            return hmac.digest(await self._derived_secret(payload), data, "sha256")
        backend = await self._backend(payload.backend)
        return await self._run(backend.sign, payload.key_id, algorithm, data)

    async def verify(
        self, handle: KeyHandle | str, algorithm: SignAlgorithm, data: bytes, signature: bytes
    ) -> bool:
        payload = await self._handles.verify(handle)
        if payload.derived:
            _check_derived_algorithm(payload, algorithm)
            expected = hmac.digest(await self._derived_secret(payload), data, "sha256")
            return hmac.compare_digest(expected, signature)
        backend = await self._backend(payload.backend)
        return await self._run(backend.verify, payload.key_id, algorithm, data, signature)

    async def encrypt(
        self, handle: KeyHandle | str, iv: bytes, aad: bytes, plaintext: bytes
    ) -> bytes:
        """AES-256-GCM: ciphertext followed by the 16-byte tag."""
        payload = await self._handles.verify(handle)
        if payload.derived:
            secret = await self._derived_secret(payload)
            return software.gcm_encrypt(_derived_name(payload), secret, iv, aad, plaintext)
        backend = await self._backend(payload.backend)
        return await self._run(backend.encrypt, payload.key_id, iv, aad, plaintext)

    async def decrypt(
        self, handle: KeyHandle | str, iv: bytes, aad: bytes, ciphertext: bytes
    ) -> bytes:
        """AES-256-GCM; `KeyOperationFailed` when the tag does not verify."""
        payload = await self._handles.verify(handle)
        if payload.derived:
            secret = await self._derived_secret(payload)
            return software.gcm_decrypt(_derived_name(payload), secret, iv, aad, ciphertext)
        backend = await self._backend(payload.backend)
        return await self._run(backend.decrypt, payload.key_id, iv, aad, ciphertext)

    async def derive(self, parent: KeyHandle | str, label: bytes) -> KeyHandle:
        """A handle for the child HMAC key HMAC-SHA256(parent, label); the parent must be HMAC."""
        payload = await self._handles.verify(parent)
        if not payload.derived:
            backend = await self._backend(payload.backend)
            info = await self._run(backend.info, payload.key_id)
            if info.kind is not KeyKind.HMAC_SHA256:
                raise KeyKindMismatch(
                    f"key {payload.key_id!r} is a {info.kind.value} key; only HMAC-SHA256 keys "
                    "can derive",
                    hint="derive from an hmac-sha256 key such as the device identity key",
                )
        labels = (*payload.labels, label)
        return await self._handles.issue(new_payload(payload.key_id, payload.backend, labels))

    async def delete(self, handle: KeyHandle | str) -> None:
        payload = await self._stored(handle, "is derived and has nothing stored to delete")
        backend = await self._backend(payload.backend)
        await self._run(backend.delete, payload.key_id)
        self._handles.forget(payload.key_id, payload.backend)
        self._forget_derived(payload.backend, payload.key_id)

    async def list(self) -> KeyListing:
        """Keys of every configured (or opened) backend; an unreachable backend is reported."""
        keys: list[KeyInfo] = []
        problems: list[BackendProblem] = []
        for name in self._backend_names():
            try:
                backend = await self._backend(name)
                keys += await self._run(backend.list_keys)
            except EdgekeeperError as err:
                log.warning("key backend %s unavailable: %s", name, err.render())
                problems.append(BackendProblem(backend=name, message=err.render()))
        return KeyListing(keys=tuple(keys), unavailable=tuple(problems))

    async def describe(self) -> builtins.list[BackendInfo | BackendProblem]:
        """What each configured backend is, or why it cannot be used."""
        answers: list[BackendInfo | BackendProblem] = []
        for name in self._backend_names():
            try:
                backend = await self._backend(name)
                answers.append(await self._run(backend.describe))
            except EdgekeeperError as err:
                answers.append(BackendProblem(backend=name, message=err.render()))
        return answers

    async def _create(self, name: str, kind: KeyKind) -> KeyHandle:
        key_id, backend_name, backend = await self._named(name)
        await self._run(backend.create, key_id, kind)
        return await self._handles.issue(new_payload(key_id, backend_name))

    async def _named(self, name: str) -> tuple[str, str, KeyBackend]:
        key_id = validate_key_name(name)
        if key_id == HANDLE_VALIDATION_KEY:
            raise ReservedKey(
                f"key {key_id!r} is reserved for the key service", hint="use another key name"
            )
        backend_name = self._registry.backend_for(key_id)
        return key_id, backend_name, await self._backend(backend_name)

    async def _stored(self, handle: KeyHandle | str, derived_problem: str) -> HandlePayload:
        payload = await self._handles.verify(handle)
        if payload.derived:
            raise KeyKindMismatch(f"derived key of {payload.key_id!r} {derived_problem}")
        return payload

    async def _derived_secret(self, payload: HandlePayload) -> bytes:
        cache_key = (payload.backend, payload.key_id, tuple(payload.labels))
        secret = self._derived.get(cache_key)
        if secret is not None:
            self._derived.move_to_end(cache_key)
            return secret
        backend = await self._backend(payload.backend)
        first, *rest = payload.labels
        secret = await self._run(backend.sign, payload.key_id, SignAlgorithm.HMAC_SHA256, first)
        for label in rest:
            secret = hmac.digest(secret, label, "sha256")
        self._derived[cache_key] = secret
        if len(self._derived) > self._derived_cache_size:
            self._derived.popitem(last=False)
        return secret

    def _forget_derived(self, backend: str, key_id: str) -> None:
        for cached in [k for k in self._derived if k[0] == backend and k[1] == key_id]:
            del self._derived[cached]

    async def _validation_mac(self, data: bytes) -> bytes:
        backend = await self._backend(self._registry.default)
        return await self._run(backend.sign, HANDLE_VALIDATION_KEY, SignAlgorithm.HMAC_SHA256, data)

    async def _backend(self, name: str) -> KeyBackend:
        backend = self._registry.opened(name)
        if backend is None:
            backend = await self._run(self._registry.open, name)
        return backend

    def _backend_names(self) -> builtins.list[str]:
        return self._registry.in_use()

    async def _run(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._executor.run(fn, *args, **kwargs)


def _check_derived_algorithm(payload: HandlePayload, algorithm: SignAlgorithm) -> None:
    if algorithm is not SignAlgorithm.HMAC_SHA256:
        raise KeyKindMismatch(
            f"{_derived_name(payload)} is an HMAC-SHA256 key and cannot do {algorithm.value}",
            hint="sign with hmac-sha256",
        )


def _derived_name(payload: HandlePayload) -> str:
    return f"derived key of {payload.key_id!r}"
