"""`KeyLocations`: the record of which backend holds each key, kept in the state store.

A key stays in the backend it was made in: configuration (`[keys] default_backend`,
`[keys.backends]`) only decides where a *new* key goes. The record is one state document
(`<state>/key-locations.json`, `{"keys": {name: backend}, "unsearched": [backend, ...]}`),
replaced atomically and fsynced on every change (`firmware.store`), so a power cut leaves the old
record or the new, never a mix. `unsearched` names the backends that could not be searched when
the key service adopted the keys of an install made before the record existed; it searches them
again at its next start.

Every method that touches the disk blocks: the key service calls them through its executor. The
in-memory copy changes only after the write succeeded, so it never runs ahead of the disk.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from pathlib import Path

from firmware.store.errors import CorruptState
from firmware.store.state import StateStore

DOCUMENT = "key-locations"


class KeyLocations:
    """Where each key lives: key name -> backend name, persisted atomically (firmware.store)."""

    def __init__(self, store: StateStore | None, document: str = DOCUMENT) -> None:
        """`store` None keeps the record in memory only, begun empty with nothing to adopt: a
        key service without a state store (tests, benchmarks) records keys as it makes them."""
        self._store = store
        self._document = document
        self._keys: dict[str, str] = {}
        self._unsearched: tuple[str, ...] = ()
        self._stored = store is None
        self._lock = threading.Lock()

    @property
    def stored(self) -> bool:
        """True once the document exists on disk (found by `load` or written since); always
        for a record kept in memory only."""
        return self._stored

    def load(self) -> None:
        """Read the document (blocking); a missing one is an empty record. A record kept in
        memory only stays as it is."""
        if self._store is None:
            return
        doc = self._store.get(self._document)
        keys = {} if doc is None else _entries(doc, self._path)
        unsearched = () if doc is None else _unsearched(doc, self._path)
        with self._lock:
            self._keys = keys
            self._unsearched = unsearched
            self._stored = doc is not None

    def backend_of(self, key_id: str) -> str | None:
        """The backend recorded for `key_id`, or None when it has no record."""
        return self._keys.get(key_id)

    def record(self, key_id: str, backend: str) -> None:
        """Record that `key_id` lives in `backend` (blocking: atomic write, fsynced)."""
        self.record_all({key_id: backend})

    def record_all(
        self, entries: Mapping[str, str], *, unsearched: Iterable[str] | None = None
    ) -> None:
        """Record several keys in one atomic write (blocking), and, when given, replace the list
        of backends still to be searched; used when adopting the keys of an install."""
        with self._lock:
            pending = self._unsearched if unsearched is None else tuple(sorted(set(unsearched)))
            same = all(self._keys.get(k) == b for k, b in entries.items())
            if self._stored and same and pending == self._unsearched:
                return
            self._write({**self._keys, **entries}, pending)

    def forget(self, key_id: str) -> None:
        """Drop the record of `key_id` (blocking: atomic write); no record is no change."""
        with self._lock:
            if key_id not in self._keys:
                return
            self._write({k: b for k, b in self._keys.items() if k != key_id}, self._unsearched)

    def items(self) -> dict[str, str]:
        """A copy of the whole record: key name -> backend name."""
        return dict(self._keys)

    def unsearched(self) -> tuple[str, ...]:
        """Backends whose keys adoption could not see yet (searched again at the next start)."""
        return self._unsearched

    @property
    def _path(self) -> Path:
        assert self._store is not None
        return self._store.path(self._document)

    def _write(self, keys: dict[str, str], unsearched: tuple[str, ...]) -> None:
        doc: dict[str, object] = {"keys": dict(sorted(keys.items()))}
        if unsearched:
            doc["unsearched"] = list(unsearched)
        if self._store is not None:
            self._store.put(self._document, doc)
        self._keys = keys
        self._unsearched = unsearched
        self._stored = True


def _entries(doc: dict[str, object], path: Path) -> dict[str, str]:
    keys = doc.get("keys")
    if not isinstance(keys, dict) or not all(
        isinstance(name, str) and isinstance(backend, str) for name, backend in keys.items()
    ):
        raise _corrupt(path, "has no object of key names to backend names")
    return dict(keys)


def _unsearched(doc: dict[str, object], path: Path) -> tuple[str, ...]:
    names = doc.get("unsearched", [])
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise _corrupt(path, "has an 'unsearched' that is not a list of backend names")
    return tuple(sorted(set(names)))


def _corrupt(path: Path, problem: str) -> CorruptState:
    return CorruptState(
        f"state file {path} {problem}",
        hint=f"it was left as is; restore it from a backup, or move it aside "
        f"(mv {path} {path}.bad) and restart to record the keys found in the backends afresh",
    )


def moving_advice(key_id: str, recorded: str, configured: str, movable: bool) -> str:
    """What to do about a key that lives elsewhere than config names: move it when its backend
    gives its material, else keep it there or make a new one (a token or TPM keeps its keys)."""
    if movable:
        return f"use `edgekeeper keys migrate {key_id} --to {configured}` to move it"
    return (
        f'it cannot leave {recorded}: keep it there ([keys.backends] {key_id} = "{recorded}") '
        f"or make a new one in {configured} (re-provision or re-issue what uses it)"
    )
