"""Objects loaded in the TPM, kept loaded between operations and flushed least-recently-used first.

A TPM has few transient object slots (three on the reference simulator); the cache holds at most
`capacity` objects and gives one up whenever the TPM says it is full. An entry is keyed by a name
and remembers a `token` (the blob it was loaded from), so a key replaced under the same name is
reloaded rather than served from a stale handle. When a load returns a TPM handle that a cached
entry still claims, the TPM was reset behind our back: that entry is dropped and every other one
flushed (it may have been loaded before the reset or after it).
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from tpm2_pytss import ESAPI, ESYS_TR
from tpm2_pytss.TSS2_Exception import TSS2_Exception

DEFAULT_CAPACITY = 16


@dataclass(frozen=True)
class _Loaded:
    handle: ESYS_TR
    tpm_handle: int
    token: bytes


class LoadedObjects:
    """Name -> loaded ESAPI handle, least recently used first. Used under the TPM lock only."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self.resets_detected = 0
        self._entries: OrderedDict[str, _Loaded] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def load(self, esapi: ESAPI, name: str, token: bytes, loader: Callable[[], ESYS_TR]) -> ESYS_TR:
        """The handle of `name` loaded from `token`: the cached one, else `loader()`'s."""
        entry = self._entries.get(name)
        if entry is not None and entry.token == token:
            self._entries.move_to_end(name)
            return entry.handle
        if entry is not None:
            self.discard(esapi, name)
        handle = loader()
        tpm_handle = int(esapi.tr_get_tpm_handle(handle))
        if any(other.tpm_handle == tpm_handle for other in self._entries.values()):
            self._after_reset(esapi, tpm_handle)
        self._entries[name] = _Loaded(handle, tpm_handle, token)
        while len(self._entries) > self.capacity:
            self.evict_oldest(esapi)
        return handle

    def evict_oldest(self, esapi: ESAPI) -> bool:
        """Flush the least recently used object; False when nothing is loaded."""
        if not self._entries:
            return False
        name = next(iter(self._entries))
        self.discard(esapi, name)
        return True

    def discard(self, esapi: ESAPI, name: str) -> None:
        """Flush `name` from the TPM if it is loaded."""
        entry = self._entries.pop(name, None)
        if entry is None:
            return
        try:
            esapi.flush_context(entry.handle)
        except TSS2_Exception:
            # Already gone from the TPM (reset, or flushed by someone else): drop our record.
            self._close(esapi, entry)

    def clear(self, esapi: ESAPI | None, *, flush: bool) -> None:
        """Drop every entry; with `flush`, flush each from the TPM when it is still there.

        Without `flush` the TPM is known to have lost them (after Startup); with no `esapi` the
        context they belonged to is gone.
        """
        if esapi is None:
            self._entries.clear()
        elif flush:
            for name in list(self._entries):
                self.discard(esapi, name)
        else:
            for name in list(self._entries):
                self._close(esapi, self._entries.pop(name))

    def _after_reset(self, esapi: ESAPI, reused: int) -> None:
        self.resets_detected += 1
        for name, entry in list(self._entries.items()):
            if entry.tpm_handle == reused:
                self._close(esapi, self._entries.pop(name))
        self.clear(esapi, flush=True)

    @staticmethod
    def _close(esapi: ESAPI, entry: _Loaded) -> None:
        with contextlib.suppress(TSS2_Exception):
            esapi.tr_close(entry.handle)
