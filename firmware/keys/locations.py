"""`KeyLocations`: the record of which backend holds each key, kept in the state store.

A key stays in the backend it was made in: configuration (`[keys] default_backend`,
`[keys.backends]`) only decides where a *new* key goes. The record is one state document
(`<state>/key-locations.json`, `{"keys": {name: backend}}`), replaced atomically and fsynced on
every change (`firmware.store`), so a power cut leaves the old record or the new, never a mix.

Every method that touches the disk blocks: the key service calls them through its executor. The
in-memory copy changes only after the write succeeded, so it never runs ahead of the disk.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

from firmware.store.errors import CorruptState
from firmware.store.state import StateStore

DOCUMENT = "key-locations"


class KeyLocations:
    """Where each key lives: key name -> backend name, persisted atomically (firmware.store)."""

    def __init__(self, store: StateStore, document: str = DOCUMENT) -> None:
        self._store = store
        self._document = document
        self._keys: dict[str, str] = {}
        self._stored = False
        self._lock = threading.Lock()

    @property
    def stored(self) -> bool:
        """True once the document exists on disk (found by `load` or written since)."""
        return self._stored

    def load(self) -> None:
        """Read the document (blocking); a missing one is an empty record."""
        doc = self._store.get(self._document)
        keys = {} if doc is None else _entries(doc, self._store, self._document)
        with self._lock:
            self._keys = keys
            self._stored = doc is not None

    def backend_of(self, key_id: str) -> str | None:
        """The backend recorded for `key_id`, or None when it has no record."""
        return self._keys.get(key_id)

    def record(self, key_id: str, backend: str) -> None:
        """Record that `key_id` lives in `backend` (blocking: atomic write, fsynced)."""
        self.record_all({key_id: backend})

    def record_all(self, entries: Mapping[str, str]) -> None:
        """Record several keys in one atomic write (blocking); used when adopting an install."""
        with self._lock:
            if self._stored and all(self._keys.get(k) == b for k, b in entries.items()):
                return
            self._write({**self._keys, **entries})

    def forget(self, key_id: str) -> None:
        """Drop the record of `key_id` (blocking: atomic write); no record is no change."""
        with self._lock:
            if key_id not in self._keys:
                return
            self._write({k: b for k, b in self._keys.items() if k != key_id})

    def items(self) -> dict[str, str]:
        """A copy of the whole record: key name -> backend name."""
        return dict(self._keys)

    def _write(self, keys: dict[str, str]) -> None:
        self._store.put(self._document, {"keys": dict(sorted(keys.items()))})
        self._keys = keys
        self._stored = True


def _entries(doc: dict[str, object], store: StateStore, document: str) -> dict[str, str]:
    keys = doc.get("keys")
    if not isinstance(keys, dict) or not all(
        isinstance(name, str) and isinstance(backend, str) for name, backend in keys.items()
    ):
        path = store.path(document)
        raise CorruptState(
            f"state file {path} has no object of key names to backend names",
            hint=f"it was left as is; restore it from a backup, or move it aside "
            f"(mv {path} {path}.bad) and restart to record the keys found in the backends afresh",
        )
    return dict(keys)
