"""A reload's new backend registry, applied in place: `KeyService.reconfigure` and
`KeysService.reconfigure`.

The registries here are built over one key directory, each backend tagged with the registry that
made it and refusing any use after it was closed, so a call that ran on the wrong registry, or on
a closed backend, fails the test.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import threading
from pathlib import Path

import pytest

from firmware.config import load_config
from firmware.errors import EdgekeeperError
from firmware.executor import BoundedExecutor
from firmware.keys.backend import KeyBackend, KeyInfo, KeyKind, SignAlgorithm
from firmware.keys.daemon import KeysService
from firmware.keys.errors import KeyBackendUnavailable
from firmware.keys.file import FileBackend
from firmware.keys.handles import HANDLE_VALIDATION_KEY
from firmware.keys.registry import BackendRegistry
from firmware.keys.service import KeyService
from firmware.store.state import StateStore
from tests.peers.waiting import wait_until_async

SECRET = bytes(range(32))
WAIT_S = 5.0


class Gate:
    """Holds a backend operation until opened; says when one has arrived."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.opened = threading.Event()

    def pass_through(self) -> None:
        self.entered.set()
        assert self.opened.wait(WAIT_S), "the test never opened the gate"

    async def arrival(self) -> None:
        loop = asyncio.get_running_loop()
        assert await loop.run_in_executor(None, self.entered.wait, WAIT_S), "nothing arrived"


class Tagged(FileBackend):
    """A file backend that records its calls as (tag, "operation key") and fails once closed;
    an operation with a gate in `gates` waits there (unless on the handle-validation key)."""

    def __init__(self, key_dir: Path, tag: str, journal: list[tuple[str, str]]) -> None:
        super().__init__(key_dir)
        self.tag = tag
        self.journal = journal
        self.closed = False
        self.gates: dict[str, Gate] = {}

    def sign(self, key_id: str, algorithm: SignAlgorithm, data: bytes) -> bytes:
        self._use("sign", key_id)
        return super().sign(key_id, algorithm, data)

    def info(self, key_id: str) -> KeyInfo:
        self._use("info", key_id)
        return super().info(key_id)

    def create(self, key_id: str, kind: KeyKind) -> None:
        self._use("create", key_id)
        super().create(key_id, kind)

    def _use(self, operation: str, key_id: str) -> None:
        if self.closed:
            raise AssertionError(f"{operation} on the closed backend of registry {self.tag}")
        gate = self.gates.get(operation)
        if gate is not None and key_id != HANDLE_VALIDATION_KEY:
            gate.pass_through()
        if self.closed:
            raise AssertionError(f"{operation} on the closed backend of registry {self.tag}")
        self.journal.append((self.tag, f"{operation} {key_id}"))

    def close(self) -> None:
        self.journal.append((self.tag, "close"))
        self.closed = True
        super().close()


class Registries:
    """Registries over one key directory, each backend tagged with its registry's name."""

    def __init__(self, key_dir: Path) -> None:
        self.key_dir = key_dir
        self.journal: list[tuple[str, str]] = []
        self.backends: dict[str, Tagged] = {}

    def make(self, tag: str) -> BackendRegistry:
        def open_file() -> KeyBackend:
            backend = self.backends[tag] = Tagged(self.key_dir, tag, self.journal)
            return backend

        return BackendRegistry("file", {"file": open_file})


def expected(data: bytes) -> bytes:
    return hmac.digest(SECRET, data, hashlib.sha256)


async def keyed(service: KeyService) -> tuple[str, bytes]:
    """Start `service`, import the test key; its handle and its signature of b"before"."""
    await service.start()
    handle = await service.import_key("device", KeyKind.HMAC_SHA256, SECRET)
    return str(handle), await service.sign(handle, SignAlgorithm.HMAC_SHA256, b"before")


async def test_reconfigure_swaps_the_registry_and_old_handles_stay_valid(key_dir, executor):
    registries = Registries(key_dir)
    service = KeyService(registries.make("A"), executor, handle_cache_size=0)
    handle, before = await keyed(service)

    await service.reconfigure(registries.make("B"))
    after = await service.sign(handle, SignAlgorithm.HMAC_SHA256, b"before")
    later = await service.sign(handle, SignAlgorithm.HMAC_SHA256, b"after")

    assert before == after == expected(b"before") and later == expected(b"after")
    assert registries.backends["A"].closed and not registries.backends["B"].closed
    closed_at = registries.journal.index(("A", "close"))
    assert all(tag == "B" for tag, _ in registries.journal[closed_at + 1 :])
    assert ("B", "sign device") in registries.journal


async def test_a_call_in_flight_ends_on_the_old_registry_and_the_old_closes_after_it(
    key_dir, executor
):
    registries = Registries(key_dir)
    service = KeyService(registries.make("A"), executor)
    handle, _ = await keyed(service)
    old = registries.backends["A"]
    gate = old.gates["sign"] = Gate()

    in_flight = asyncio.create_task(service.sign(handle, SignAlgorithm.HMAC_SHA256, b"slow"))
    await gate.arrival()
    swap = asyncio.create_task(service.reconfigure(registries.make("B")))
    await wait_until_async(lambda: "B" in registries.backends, timeout_s=WAIT_S, what="swap")
    fresh = await service.create_key("fresh", KeyKind.HMAC_SHA256)
    signed_meanwhile = await service.sign(fresh, SignAlgorithm.HMAC_SHA256, b"x")
    waited_for_the_call = not swap.done() and not old.closed
    gate.opened.set()
    slow = await in_flight
    await swap

    assert waited_for_the_call, "the old registry closed under a call in flight"
    assert len(signed_meanwhile) == 32, "later calls must not wait for the old registry"
    assert slow == expected(b"slow")
    assert registries.journal.index(("A", "sign device")) < registries.journal.index(("A", "close"))
    assert ("B", "sign fresh") in registries.journal


async def test_an_operation_that_took_a_backend_before_the_swap_ends_on_it(key_dir, executor):
    """Creating a recorded key asks its backend whether it still holds it, then creates it: a
    swap between the two must not close that backend under the second call."""
    registries = Registries(key_dir)
    service = KeyService(registries.make("A"), executor)
    await keyed(service)
    old = registries.backends["A"]
    asking, creating_gate = old.gates["info"], old.gates["create"] = Gate(), Gate()

    creating = asyncio.create_task(service.create_key("device", KeyKind.HMAC_SHA256))
    await asking.arrival()
    swap = asyncio.create_task(service.reconfigure(registries.make("B")))
    await wait_until_async(lambda: "B" in registries.backends, timeout_s=WAIT_S, what="swap")
    await service.create_key("fresh", KeyKind.HMAC_SHA256)
    asking.opened.set()
    await creating_gate.arrival()
    # The old registry must stay open while the create runs: give a wrong swap time to close it.
    done, _ = await asyncio.wait({swap}, timeout=0.3)
    creating_gate.opened.set()
    handle = await creating
    await swap
    signed = await service.sign(handle, SignAlgorithm.HMAC_SHA256, b"x")

    assert not done, "the old registry closed while an operation still used its backend"
    assert signed == expected(b"x")
    journal = registries.journal
    assert journal.index(("A", "create device")) < journal.index(("A", "close"))
    assert ("B", "create fresh") in journal


async def test_a_backend_being_opened_during_the_swap_is_taken_from_the_new_registry(
    key_dir, executor
):
    journal: list[tuple[str, str]] = []
    opening = threading.Event()
    release = threading.Event()
    made: dict[str, Tagged] = {}
    plugged_in = threading.Event()

    def registry(tag: str, default: str, gated: bool) -> BackendRegistry:
        def open_file() -> KeyBackend:
            return Tagged(key_dir, tag, journal)

        def open_hsm() -> KeyBackend:
            if gated and not plugged_in.is_set():
                raise KeyBackendUnavailable("the hsm is not plugged in yet", hint="plug it in")
            if gated:
                opening.set()
                assert release.wait(WAIT_S), "the test never released the open"
            backend = made[tag] = Tagged(key_dir, tag, journal)
            return backend

        factories = {"file": open_file, default: open_file, "hsm": open_hsm}
        return BackendRegistry(default, factories, overrides={"device": "hsm"})

    issuer = KeyService(registry("issuer", "file", gated=False), executor)
    handle, before = await keyed(issuer)
    await issuer.close()
    service = KeyService(registry("A", "file", gated=True), executor)
    await service.start()  # the hsm is down: it opens on first use, below
    plugged_in.set()

    signing = asyncio.create_task(service.sign(handle, SignAlgorithm.HMAC_SHA256, b"before"))
    await asyncio.get_running_loop().run_in_executor(None, opening.wait, WAIT_S)
    # B's default has another name only to show when the swap happened: the signing call has
    # verified its handle already and is waiting for the hsm backend of A to open.
    swap = asyncio.create_task(service.reconfigure(registry("B", "file-b", gated=False)))
    await wait_until_async(
        lambda: service.default_backend == "file-b", timeout_s=WAIT_S, what="the swap"
    )
    release.set()
    signed = await signing
    await swap

    assert signed == before
    assert made["A"].closed, "the backend opened in the old registry is closed with it"
    assert ("B", "sign device") in journal and ("A", "sign device") not in journal


async def test_a_registry_whose_default_backend_cannot_open_keeps_the_old(key_dir, executor):
    registries = Registries(key_dir)
    service = KeyService(registries.make("A"), executor, handle_cache_size=0)
    handle, before = await keyed(service)
    closed: list[str] = []

    def no_token() -> KeyBackend:
        raise KeyBackendUnavailable("no token", hint="plug it in")

    class Broken(BackendRegistry):
        def close(self) -> None:
            closed.append("broken")
            super().close()

    with pytest.raises(KeyBackendUnavailable, match="no token"):
        await service.reconfigure(Broken("pkcs11", {"pkcs11": no_token}))
    again = await service.sign(handle, SignAlgorithm.HMAC_SHA256, b"before")

    assert again == before
    assert service.default_backend == "file"
    assert not registries.backends["A"].closed
    assert closed == ["broken"], "the refused registry is closed"


def keys_config(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        f'[paths]\ndata_dir = "{tmp_path}/data"\nrun_dir = "{tmp_path}/run"\n\n'
        f'[keys.file]\ndir = "{tmp_path}/keys"\n{extra}'
    )
    path.chmod(0o600)
    return path


async def test_the_keys_daemon_service_reconfigures_in_place_or_keeps_what_it_had(tmp_path):
    executor = BoundedExecutor()
    store = StateStore(tmp_path / "state")
    store.ensure()
    service = KeysService(load_config(keys_config(tmp_path, "")), executor, store)
    await service.prepare()
    task = asyncio.create_task(service.run())
    try:
        keys = await asyncio.wait_for(service.wait_ready(), WAIT_S)
        handle, before = await keyed(keys)
        spare = '[keys.backends]\nspare = "tpm"\n[tpm]\ntcti = "device:/nonexistent/tpm"\n'
        applied = await service.reconfigure(load_config(keys_config(tmp_path, spare)))
        spare_failure = None
        try:
            await keys.create_key("spare", KeyKind.AES_256)
        except EdgekeeperError as error:
            spare_failure = error.render()
        bad_token = (
            '[keys]\ndefault_backend = "pkcs11"\n'
            '[keys.pkcs11]\nmodule = "/nonexistent/libvendor-pkcs11.so"\ntoken_label = "t"\n'
            'pin = "1234"\n'
        )
        with pytest.raises(KeyBackendUnavailable, match="libvendor-pkcs11"):
            await service.reconfigure(load_config(keys_config(tmp_path, bad_token)))
        after = await service.current().sign(handle, SignAlgorithm.HMAC_SHA256, b"before")
        still = service.describe()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        executor.shutdown()

    assert applied is True
    assert service.keys is keys, "a reload must not replace the KeyService its holders have"
    assert spare_failure is not None and "/nonexistent/tpm" in spare_failure
    assert after == before
    assert (still["ready"], still["default_backend"]) == (True, "file")
