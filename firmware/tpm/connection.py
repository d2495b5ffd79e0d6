"""One ESAPI context to one TPM, used by one thread at a time, that survives TPM resets.

`TpmConnection.run(what, op)` calls `op(esapi)` under the connection's lock and deals with what the
TPM answers: a busy TPM (RETRY, YIELDED, TESTING) is asked again after a growing wait; a TPM that
was reset and wants TPM2_Startup gets Startup(CLEAR); handles that stopped naming loaded objects
(after a reset, a restart of the simulator, a lost connection) are dropped so `op` loads its
objects again on the next attempt; a full TPM gets its least recently used object flushed; a
lockout or anything else becomes one clear `EdgekeeperError`. Methods block: call them from the
daemon's executor, never on the event loop.

`srk` is the storage parent of edgekeeper's keys: the ECC storage key at 0x81000002, or the
handle `settle_storage` found recorded for the stored keys (see `layout`).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Collection, Iterator
from typing import TypeVar

from tpm2_pytss import ESAPI, ESYS_TR
from tpm2_pytss.constants import TPM2_RC, TPM2_SU
from tpm2_pytss.TSS2_Exception import TSS2_Exception
from tpm2_pytss.types import TPM2B_PUBLIC

from firmware.tpm import codes, layout
from firmware.tpm.codes import Outcome
from firmware.tpm.errors import (
    LOCKOUT_HINT,
    TCTI_HINT,
    TpmCommandFailed,
    TpmLockout,
    TpmUnavailable,
)
from firmware.tpm.handle_record import HandleRecord
from firmware.tpm.link import COMMAND_TIMEOUT_S, TpmLink, link_for
from firmware.tpm.objects import DEFAULT_CAPACITY, LoadedObjects
from firmware.tpm.retry import RetryPolicy
from firmware.tpm.srk import STORAGE_HANDLE, ensure_storage_key
from firmware.tpm.tcti import TctiSpec
from firmware.transports.address import DeviceUrl

T = TypeVar("T")
Connector = Callable[[], tuple[ESAPI, Callable[[], None]]]


class TpmConnection:
    """The TPM at one device URL: commands, the storage key of edgekeeper's keys, loaded objects.

    `owner_auth` and `endorsement_auth` are the hierarchies' passwords when they have one (needed
    to create and persist primary keys, and by DPS TPM attestation's PolicySecret on the
    endorsement hierarchy); `device` is a device URL or IoT Edge TCTI string (`link`);
    `connector` replaces the link's way to open the TPM (tests); `command_timeout` bounds each
    command on edgekeeper's own transports.
    """

    def __init__(
        self,
        device: str | DeviceUrl | TctiSpec,
        *,
        retry: RetryPolicy | None = None,
        storage_handle: int = STORAGE_HANDLE,
        capacity: int = DEFAULT_CAPACITY,
        owner_auth: str | None = None,
        endorsement_auth: str | None = None,
        connector: Connector | None = None,
        command_timeout: float = COMMAND_TIMEOUT_S,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.link: TpmLink = link_for(device, command_timeout)
        self._owner_auth = owner_auth
        self._endorsement_auth = endorsement_auth
        self.retry = retry or RetryPolicy()
        self.storage_handle = storage_handle
        self.objects = LoadedObjects(capacity)
        self._resets = 0
        self._connector = connector or self.link.open
        self._sleep = sleep
        self._lock = threading.RLock()
        self._esapi: ESAPI | None = None
        self._close_link: Callable[[], None] = _nothing
        self._srk: tuple[ESYS_TR, TPM2B_PUBLIC, bytes] | None = None
        self._closed = False

    @property
    def resets(self) -> int:
        """How often the loaded objects were found lost (TPM reset, restart, reconnection)."""
        return self._resets + self.objects.resets_detected

    def run(self, what: str, op: Callable[[ESAPI], T]) -> T:
        """`op(esapi)` with retries and recovery; `what` names the operation in errors."""
        with self._lock:
            delays = self.retry.delays()  # a generator: nothing is computed until a retry
            recovered: set[Outcome] = set()
            while True:
                esapi = self._session()
                try:
                    return op(esapi)
                except TSS2_Exception as exc:
                    self._recover(what, esapi, exc, delays, recovered)

    def settle_storage(
        self, record: HandleRecord, key_parents: Callable[[], Collection[bytes]]
    ) -> int:
        """Bring the TPM's storage keys to the current layout (`layout.settle`) and make the
        parent `record` names (decided from `key_parents()` when there is none) the parent of
        keys from now on; that parent's persistent handle."""
        with self._lock:
            handle = self.run(
                "setting up the storage keys",
                lambda esapi: layout.settle(esapi, record, key_parents),
            )
            if handle != self.storage_handle:
                self.storage_handle = handle
                self._forget_storage_key(self._esapi)
            return handle

    def srk(self, esapi: ESAPI) -> ESYS_TR:
        """The handle of the storage key of edgekeeper's keys, created and persisted if absent."""
        return self._storage_root(esapi)[0]

    def srk_public(self, esapi: ESAPI) -> TPM2B_PUBLIC:
        """The storage key's public area (the parent that keys are wrapped for on import)."""
        return self._storage_root(esapi)[1]

    def srk_name(self, esapi: ESAPI) -> bytes:
        """The storage key's TPM name: what a child's blobs are bound to."""
        return self._storage_root(esapi)[2]

    def unload(self, name: str) -> None:
        """Flush `name` from the TPM if it is loaded."""
        with self._lock:
            if self._esapi is not None:
                self.objects.discard(self._esapi, name)

    def close(self) -> None:
        """Flush what we loaded and disconnect; the connection is not used afterwards."""
        with self._lock:
            if self._esapi is not None:
                self.objects.clear(self._esapi, flush=True)
            self._disconnect()
            self._closed = True

    def _session(self) -> ESAPI:
        if self._closed:
            raise TpmUnavailable(f"the connection to the TPM ({self.link.where}) is closed")
        if self._esapi is None:
            self._esapi, self._close_link = self._connector()
            if self._owner_auth:
                self._esapi.tr_set_auth(ESYS_TR.OWNER, self._owner_auth)
            if self._endorsement_auth:
                self._esapi.tr_set_auth(ESYS_TR.ENDORSEMENT, self._endorsement_auth)
        return self._esapi

    def _storage_root(self, esapi: ESAPI) -> tuple[ESYS_TR, TPM2B_PUBLIC, bytes]:
        if self._srk is None:
            handle, public = ensure_storage_key(esapi, self.storage_handle)
            self._srk = (handle, public, bytes(public.get_name()))
        return self._srk

    def _recover(
        self,
        what: str,
        esapi: ESAPI,
        exc: TSS2_Exception,
        delays: Iterator[float],
        recovered: set[Outcome],
    ) -> None:
        """Make the next attempt worthwhile, or raise the error that ends the operation."""
        outcome = codes.classify(exc.rc)
        if outcome is Outcome.RETRY:
            delay = next(delays, None)
            if delay is None:
                raise TpmCommandFailed(
                    f"the TPM ({self.link.where}) stayed busy while {what} "
                    f"after {self.retry.attempts} attempts: {exc}",
                    rc=exc.rc,
                    hint="the TPM may still be self-testing; try again in a moment",
                ) from exc
            self._sleep(delay)
            return
        if outcome is Outcome.FULL:
            if self.objects.evict_oldest(esapi):
                return
            raise TpmCommandFailed(
                f"the TPM ({self.link.where}) has no room for another object while {what}",
                rc=exc.rc,
                hint="other programs hold TPM object slots; use device:/dev/tpmrm0 so the "
                "kernel resource manager shares them",
            ) from exc
        if outcome is Outcome.LOCKOUT:
            raise TpmLockout(
                f"the TPM ({self.link.where}) is in dictionary-attack lockout while {what}",
                hint=LOCKOUT_HINT,
            ) from exc
        if outcome in recovered or outcome is Outcome.FAILED:
            raise self._failure(what, exc, outcome) from exc
        recovered.add(outcome)
        if outcome is Outcome.STARTUP:
            self._startup(what, esapi)
            self._lost_objects(esapi, flush=False)  # Startup(CLEAR) emptied the TPM already
        elif outcome is Outcome.STALE:
            self._lost_objects(esapi, flush=True)
        else:
            self._disconnect()

    def _failure(self, what: str, exc: TSS2_Exception, outcome: Outcome) -> Exception:
        if outcome is Outcome.DISCONNECTED:
            failed = self.link.last_error()
            reason, hint = (str(exc), None) if failed is None else (failed.message, failed.hint)
            return TpmUnavailable(
                f"lost the TPM ({self.link.where}) while {what}: {reason}", hint=hint or TCTI_HINT
            )
        return TpmCommandFailed(f"the TPM ({self.link.where}) refused {what}: {exc}", rc=exc.rc)

    def _startup(self, what: str, esapi: ESAPI) -> None:
        try:
            esapi.startup(TPM2_SU.CLEAR)
        except TSS2_Exception as exc:
            if codes.tpm_code(exc.rc) != TPM2_RC.INITIALIZE:  # someone else started it: fine
                outcome = codes.classify(exc.rc)
                raise self._failure(f"TPM2_Startup before {what}", exc, outcome) from exc

    def _lost_objects(self, esapi: ESAPI, *, flush: bool) -> None:
        """The TPM lost (some of) what we loaded: start afresh, the SRK handle included."""
        self.objects.clear(esapi, flush=flush)
        self._forget_storage_key(esapi)
        self._resets += 1

    def _forget_storage_key(self, esapi: ESAPI | None = None) -> None:
        if self._srk is not None and esapi is not None:
            with contextlib.suppress(TSS2_Exception):
                esapi.tr_close(self._srk[0])
        self._srk = None

    def _disconnect(self) -> None:
        self.objects.clear(None, flush=False)
        self._srk = None
        if self._esapi is not None:
            self._esapi = None
            self._resets += 1
            with contextlib.suppress(TSS2_Exception):
                self._close_link()
        self._close_link = _nothing


def _nothing() -> None:
    """Closing a link that was never opened."""
