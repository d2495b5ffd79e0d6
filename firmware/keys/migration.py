"""Moving keys between backends on request: a plan first, then the move, safe to kill at any time.

`KeyMigration.plan(names, target)` says for each key where it is, where it would go, its kind,
whether its backend can give its material out, and what will happen; it changes nothing.
`apply(plan)` carries the plan out, key by key:

1. export the material from the source (only the file backend holds it; a PKCS#11 or TPM key
   cannot leave its device, and asking to move one is refused with what to do instead);
2. import it into the target under the same name, unless the target already holds a copy (left
   by an interrupted move) that matches the source, which is kept;
3. verify the target's copy by a round trip against the source (HMAC: both sign the same random
   data; pairs: the new copy signs, the old public key verifies; AES: each decrypts what the
   other encrypted);
4. switch the location record to the target (`KeyService.relocate`, one atomic write): the
   commit point;
5. delete the source's copy, once it is shown to be the same key.

Killed before step 4, the record still names the untouched source; after it, the target holds a
verified copy. A copy the record does not point to is a leftover: the next migration of that key
reuses it (target, before the switch) or removes it (any other backend, after the switch), but
only a copy shown to be the same key; one that differs is kept and reported.
"""

from __future__ import annotations

import asyncio
import enum
import hmac
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from firmware.errors import Conflict, EdgekeeperError
from firmware.keys.backend import KeyBackend, KeyInfo, KeyKind, SignAlgorithm
from firmware.keys.errors import KeyKindMismatch, KeyNotFound, KeyOperationFailed
from firmware.keys.handles import HANDLE_VALIDATION_KEY
from firmware.keys.names import validate_key_name

if TYPE_CHECKING:
    from firmware.keys.service import Executor, KeyService

log = logging.getLogger(__name__)

CHALLENGE_LENGTH = 32
_GCM_IV_LENGTH = 12
_GCM_AAD = b"edgekeeper key migration round trip"

# Why a backend's keys stay where they are, for the refusal.
_KEPT_BY = {
    "pkcs11": "it is non-extractable on the PKCS#11 token, which never gives its material out",
    "tpm": "its private part is wrapped by this TPM's storage root key, useless anywhere else",
}


class KeyCannotMove(Conflict):
    """A key whose backend cannot give its material out (a PKCS#11 token, a TPM)."""


class KeyMovedMeanwhile(Conflict):
    """The location record of a planned key changed between the plan and the move."""


class MoveAction(enum.Enum):
    """What a migration does with one key."""

    MOVE = "move"  # copy to the target, verify, switch the record, delete the old copy
    STAY = "stay"  # already in the target: only leftover copies elsewhere are removed
    REFUSE = "refuse"  # its backend cannot give it out


class MoveOutcome(enum.Enum):
    """What became of one key."""

    PLANNED = "planned"  # a dry run: nothing was done
    MOVED = "moved"
    UNCHANGED = "unchanged"  # already in the target, or refused
    FAILED = "failed"


@dataclass(frozen=True)
class KeyMove:
    """The plan for one key: from where to where, and what will happen."""

    key_id: str
    source: str
    target: str
    kind: KeyKind
    exportable: bool
    action: MoveAction
    leftovers: tuple[str, ...] = ()  # other backends holding a key of that name
    refusal: str = ""  # for REFUSE: why the key cannot move
    advice: str = ""  # for REFUSE: what to do instead

    @property
    def steps(self) -> tuple[str, ...]:
        """What applying the plan does with this key, in order."""
        if self.action is MoveAction.REFUSE:
            return (f"stays in {self.source}: {self.refusal}", self.advice)
        steps: list[str] = []
        if self.action is MoveAction.MOVE:
            if self.target in self.leftovers:
                steps.append(
                    f"keep the copy already in {self.target} if it is the same key, "
                    "else replace it with the material from " + self.source
                )
            else:
                steps.append(f"copy the material from {self.source} into {self.target}")
            steps += [
                f"verify the copy in {self.target} against {self.source} by a round trip",
                f"record {self.target} as the key's backend",
                f"delete the copy in {self.source}",
            ]
        others = [name for name in self.leftovers if name != self.target]
        steps += [f"delete the leftover copy in {name} if it is the same key" for name in others]
        return tuple(steps) or (f"nothing: already in {self.target}",)


@dataclass(frozen=True)
class MigrationPlan:
    """The moves asked for, one per key; `target` is where every key goes."""

    target: str
    moves: tuple[KeyMove, ...]


@dataclass(frozen=True)
class MoveResult:
    """What applying (or not) one `KeyMove` did."""

    move: KeyMove
    outcome: MoveOutcome
    backend: str  # where the key lives now (the source unless the record was switched)
    removed: tuple[str, ...] = ()  # backends whose leftover copy was deleted
    kept: tuple[str, ...] = ()  # backends whose copy differs from the key and was left alone
    problem: str = ""  # for FAILED: the rendered error


class KeyMigration:
    """Plans and applies key moves over a `KeyService`; one migration at a time."""

    def __init__(self, keys: KeyService, executor: Executor) -> None:
        self._keys = keys
        self._executor = executor
        self._lock = asyncio.Lock()

    async def plan(self, names: Sequence[str] | None, target: str) -> MigrationPlan:
        """The plan to move `names` (None: every recorded key) to backend `target`.

        Named keys that cannot leave their backend raise `KeyCannotMove` (all of them in one
        error); with None they are in the plan as refused. Keys already in `target` with no
        leftover copy are left out of a plan for every key.
        """
        await self._keys.backend(target)  # an unknown or unreachable target fails here
        recorded = self._keys.locations.items()
        holders = _holders((await self._keys.list()).keys)
        if names is None:
            wanted = sorted(recorded)
        else:
            wanted = list(dict.fromkeys(validate_key_name(name) for name in names))
        moves = []
        for key_id in wanted:
            move = await self._plan_one(key_id, recorded.get(key_id), target, holders)
            if names is None and move.action is MoveAction.STAY and not move.leftovers:
                continue
            moves.append(move)
        refused = [move for move in moves if move.action is MoveAction.REFUSE]
        if names is not None and refused:
            raise KeyCannotMove(
                "; ".join(
                    f"key {m.key_id!r} cannot leave {m.source}: {m.refusal}" for m in refused
                ),
                hint=" ".join(m.advice for m in refused),
            )
        return MigrationPlan(target=target, moves=tuple(moves))

    async def apply(self, plan: MigrationPlan) -> tuple[MoveResult, ...]:
        """Carry `plan` out key by key; a key that fails is reported and the others still move."""
        async with self._lock:
            return tuple([await self._apply_one(move) for move in plan.moves])

    async def _plan_one(
        self, key_id: str, source: str | None, target: str, holders: dict[str, dict[str, KeyInfo]]
    ) -> KeyMove:
        copies = holders.get(key_id, {})
        if source is None:
            raise KeyNotFound(
                f"key {key_id!r} has no recorded backend",
                hint="`edgekeeper keys list` shows the keys and where they live",
            )
        info = copies.get(source)
        if info is None:
            backend = await self._keys.backend(source)
            info = await self._executor.run(backend.info, key_id)
        leftovers = tuple(sorted(set(copies) - {source}))
        if source == target:
            return KeyMove(key_id, source, target, info.kind, True, MoveAction.STAY, leftovers)
        exportable = (await self._keys.backend(source)).exports_keys
        if not exportable:
            return KeyMove(
                key_id,
                source,
                target,
                info.kind,
                exportable,
                MoveAction.REFUSE,
                leftovers,
                refusal=_KEPT_BY.get(source, f"key backend {source!r} does not give keys out"),
                advice=_advice(key_id, info.kind, target),
            )
        return KeyMove(key_id, source, target, info.kind, exportable, MoveAction.MOVE, leftovers)

    async def _apply_one(self, move: KeyMove) -> MoveResult:
        if move.action is MoveAction.REFUSE:
            return MoveResult(move, MoveOutcome.UNCHANGED, move.source)
        try:
            recorded = self._keys.locations.backend_of(move.key_id)
            if recorded != move.source:
                raise KeyMovedMeanwhile(
                    f"key {move.key_id!r} is recorded in {recorded}, not {move.source} as planned",
                    hint="plan the migration again",
                )
            if move.action is MoveAction.MOVE:
                await self._move(move)
            removed, kept = await self._remove_copies(move)
        except EdgekeeperError as err:
            now = self._keys.locations.backend_of(move.key_id) or move.source
            log.warning(
                "key %s to %s failed (in %s): %s", move.key_id, move.target, now, err.render()
            )
            return MoveResult(move, MoveOutcome.FAILED, now, problem=err.render())
        outcome = MoveOutcome.MOVED if move.action is MoveAction.MOVE else MoveOutcome.UNCHANGED
        return MoveResult(move, outcome, move.target, removed=removed, kept=kept)

    async def _move(self, move: KeyMove) -> None:
        source = await self._keys.backend(move.source)
        target = await self._keys.backend(move.target)
        await self._executor.run(copy_verified, source, target, move.key_id)
        await self._keys.relocate(move.key_id, move.target)
        log.info("key %s moved from %s to %s", move.key_id, move.source, move.target)

    async def _remove_copies(self, move: KeyMove) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Delete the old copy (after a move) and every leftover outside the target that is the
        same key; the leftovers deleted, and the copies kept because they differ."""
        target = await self._keys.backend(move.target)
        copies = set(move.leftovers) - {move.target}
        if move.action is MoveAction.MOVE:
            copies.add(move.source)
        removed: list[str] = []
        kept: list[str] = []
        for name in sorted(copies):
            copy = await self._keys.backend(name)
            if not await self._executor.run(remove_if_same, target, copy, move.key_id, move.kind):
                kept.append(name)
            elif name in move.leftovers:
                removed.append(name)
        if kept:
            log.warning("key %s: copies in %s differ and were kept", move.key_id, ", ".join(kept))
        return tuple(removed), tuple(kept)


def copy_verified(source: KeyBackend, target: KeyBackend, key_id: str) -> None:
    """Put a verified copy of `key_id` from `source` into `target` (blocking).

    A copy already in the target is kept when it is the same key and replaced otherwise. A fresh
    copy that fails the round trip is deleted again and `KeyOperationFailed` raised: the record
    still names the source, which was never changed.
    """
    kind, material = source.export_key(key_id)
    if same_key(source, target, key_id, kind):
        return
    target.import_key(key_id, kind, material)
    if not same_key(source, target, key_id, kind):
        target.delete(key_id)
        raise KeyOperationFailed(
            f"the copy of key {key_id!r} in {target.name} does not match the one in "
            f"{source.name}; it was deleted and the key stays in {source.name}",
            hint=f"check that the {target.name} backend supports {kind.value} keys fully",
        )


def remove_if_same(reference: KeyBackend, leftover: KeyBackend, key_id: str, kind: KeyKind) -> bool:
    """Delete `leftover`'s copy of `key_id` if it is the same key as `reference`'s (blocking)."""
    if not same_key(reference, leftover, key_id, kind):
        return False
    leftover.delete(key_id)
    return True


def same_key(reference: KeyBackend, candidate: KeyBackend, key_id: str, kind: KeyKind) -> bool:
    """Whether `candidate` holds `key_id` as the same, usable key as `reference` (blocking).

    Decided by a round trip on fresh random data, never by comparing material: HMAC keys both
    sign it; a pair's candidate signs and both verify, and its public keys are equal; AES keys
    each decrypt what the other encrypted. A candidate that is missing, of another kind or
    broken is not the same key.
    """
    data = os.urandom(CHALLENGE_LENGTH)
    try:
        if candidate.info(key_id).kind is not kind:
            return False
        if kind is KeyKind.HMAC_SHA256:
            mine = candidate.sign(key_id, SignAlgorithm.HMAC_SHA256, data)
            return hmac.compare_digest(
                reference.sign(key_id, SignAlgorithm.HMAC_SHA256, data), mine
            )
        if kind is KeyKind.AES_256:
            return _decrypts(reference, candidate, key_id, data) and _decrypts(
                candidate, reference, key_id, data
            )
        algorithm = (
            SignAlgorithm.ECDSA_SHA256 if kind is KeyKind.EC_P256 else SignAlgorithm.RSA_PSS_SHA256
        )
        if candidate.public_key(key_id) != reference.public_key(key_id):
            return False
        signature = candidate.sign(key_id, algorithm, data)
        return reference.verify(key_id, algorithm, data, signature) and candidate.verify(
            key_id, algorithm, data, signature
        )
    except (KeyNotFound, KeyKindMismatch, KeyOperationFailed):
        return False


def _decrypts(sealer: KeyBackend, opener: KeyBackend, key_id: str, data: bytes) -> bool:
    iv = os.urandom(_GCM_IV_LENGTH)
    sealed = sealer.encrypt(key_id, iv, _GCM_AAD, data)
    return hmac.compare_digest(opener.decrypt(key_id, iv, _GCM_AAD, sealed), data)


def _holders(keys: Iterable[KeyInfo]) -> dict[str, dict[str, KeyInfo]]:
    """Key name -> backend name -> the key as that backend lists it."""
    holders: dict[str, dict[str, KeyInfo]] = {}
    for info in keys:
        holders.setdefault(info.key_id, {})[info.backend] = info
    return holders


def _advice(key_id: str, kind: KeyKind, target: str) -> str:
    """What to do instead of moving a key that cannot leave its backend."""
    if key_id == HANDLE_VALIDATION_KEY:
        return (
            f"recreate it in {target} instead: every key handle issued so far stops verifying, "
            "and the daemon's services take new ones when it restarts"
        )
    if kind is KeyKind.HMAC_SHA256:
        return (
            f"re-provision instead: make a new key in {target} and register it wherever the old "
            "one is trusted (for the device identity key: provision the device with the hub "
            "again, which changes every module key)"
        )
    if kind.asymmetric:
        return (
            f"re-issue instead: make a new key pair in {target} and have its certificate issued "
            "again for it"
        )
    return (
        f"recreate it in {target} instead, and encrypt again with the new key whatever the old "
        "one sealed"
    )
