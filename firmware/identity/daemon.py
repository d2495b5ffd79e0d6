"""Daemon service "identity": the device identity and the module identities, on the hub when the
device has one.

`run` waits for the key service, builds the provisioning setup from `[provisioning]`
(`firmware.identity.setup`), obtains the device identity (`DeviceProvisioner`: the cache first,
else DPS or the manual settings, retried with back-off while the state says "waiting for
provisioning"), loads the module identities and, when the device has a hub, finishes what a
killed daemon left half done there and reconciles after a fresh provisioning. Then it serves
reprovision requests: `POST /device/reprovision`, `edgekeeper system reprovision`, and any hub
call refused for the device's credentials. A move to another hub or device id clears the module
identities and has every module created again (`moved`, given by the wiring), as IoT Edge does.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from firmware.config.schema import Config
from firmware.errors import EdgekeeperError, Unavailable
from firmware.executor import BoundedExecutor
from firmware.identity.device import DeviceIdentity, DeviceIdentityCache
from firmware.identity.errors import CloudUnauthorized, NotProvisioned
from firmware.identity.modules import ModuleIdentities
from firmware.identity.provisioning import DeviceProvisioner, ProvisioningBackoff
from firmware.identity.setup import ProvisioningSetup, provisioning_setup
from firmware.keys.service import KeyService
from firmware.logs import fields, get_logger
from firmware.store.state import StateStore

log = get_logger("identity")


class IdentityService:
    """The device and module identities under the daemon's supervisor."""

    name = "identity"

    def __init__(
        self,
        config: Config,
        store: StateStore,
        executor: BoundedExecutor,
        *,
        keys: Callable[[], Awaitable[KeyService]],
        moved: Callable[[str], Awaitable[None]],
        backoff: ProvisioningBackoff | None = None,
    ) -> None:
        self._config = config
        self._store = store
        self._executor = executor
        self._keys = keys
        self._moved = moved
        self._backoff = backoff or ProvisioningBackoff()
        self.provisioner: DeviceProvisioner | None = None
        self.identities: ModuleIdentities | None = None
        self._setup: ProvisioningSetup | None = None
        self._device = asyncio.Event()
        self._ready = asyncio.Event()
        self._requests: asyncio.Queue[tuple[str, asyncio.Future[DeviceIdentity]]] = asyncio.Queue()

    async def prepare(self) -> None:
        """Nothing to acquire: the setup needs the key service, which starts in `run`."""

    async def run(self) -> None:
        keys = await self._keys()
        setup = await provisioning_setup(self._config, keys, self._executor.run, self._refused)
        cache = DeviceIdentityCache(self._store)
        earlier = await self._executor.run(cache.any)
        provisioner = DeviceProvisioner(
            setup.source,
            cache,
            setup.digest,
            self._executor.run,
            mode=self._config.reprovisioning_mode(),
        )
        self._setup, self.provisioner = setup, provisioner
        try:
            await self._serve_device(setup, provisioner, earlier, keys)
        finally:
            setup.close()

    async def _serve_device(
        self,
        setup: ProvisioningSetup,
        provisioner: DeviceProvisioner,
        earlier: DeviceIdentity | None,
        keys: KeyService,
    ) -> None:
        identity = await self._first_identity(provisioner)
        identities = ModuleIdentities(keys, self._store, self._executor.run, setup.modules)
        await identities.start()
        setup.point_at(identity)
        self.identities = identities
        if earlier is not None and _moved(earlier, identity):
            await self._settle_move(identities, identity)
        elif provisioner.state.state != "from cache":
            await self._sync(identities, "provisioned")
        elif identities.pending:
            await self._sync(identities, "recover")
        self._device.set()
        self._ready.set()
        try:
            await self._serve(provisioner, identities, setup)
        finally:
            self._ready.clear()
            self._device.clear()

    async def wait_device(self) -> None:
        """Return once the device has an identity (from the cloud or the cache)."""
        await self._device.wait()

    def device(self) -> DeviceIdentity:
        """The device identity; `NotProvisioned` while there is none."""
        provisioner = self.provisioner
        if provisioner is None or provisioner.identity is None or not self._device.is_set():
            raise NotProvisioned(
                "the device has no identity yet (waiting for provisioning)",
                hint="`edgekeeper system status` shows the last provisioning result",
            )
        return provisioner.identity

    async def wait_identities(self) -> ModuleIdentities:
        await self._ready.wait()
        assert self.identities is not None
        return self.identities

    def current(self) -> ModuleIdentities:
        """The module identities when ready; `Unavailable` otherwise (never waits)."""
        if self.identities is None or not self._ready.is_set():
            raise Unavailable(
                "module identities are not ready (waiting for the key service or provisioning)",
                hint="see `edgekeeper status` and the daemon log",
            )
        return self.identities

    async def reprovision(self, reason: str) -> DeviceIdentity:
        """Provision again now (what the management API and the CLI ask for)."""
        if not self._ready.is_set():
            raise NotProvisioned(
                "the device is still provisioning for the first time",
                hint="`edgekeeper system status` shows the last provisioning result",
            )
        done: asyncio.Future[DeviceIdentity] = asyncio.get_running_loop().create_future()
        await self._requests.put((reason, done))
        return await done

    def describe(self) -> dict[str, object]:
        provisioner = self.provisioner
        if provisioner is None:
            return {"ready": False, "provisioning": {"state": "starting"}}
        described: dict[str, object] = {
            "ready": self._ready.is_set(),
            "provisioning": provisioner.state.document(),
        }
        if self.identities is not None:
            described["identities"] = len(self.identities.list())
        return described

    async def _first_identity(self, provisioner: DeviceProvisioner) -> DeviceIdentity:
        while True:
            try:
                identity = await provisioner.start()
            except EdgekeeperError as exc:
                delay = self._backoff.next_delay(getattr(exc, "retry_after_s", None))
                provisioner.failed(exc, time.time() + delay)
                log.warning(
                    "waiting for provisioning",
                    extra=fields(error=exc.render(), retry_in_s=round(delay, 1)),
                )
                await asyncio.sleep(delay)
                continue
            self._backoff.reset()
            return identity

    async def _serve(
        self, provisioner: DeviceProvisioner, identities: ModuleIdentities, setup: ProvisioningSetup
    ) -> None:
        while True:
            reason, done = await self._requests.get()
            try:
                identity, moved = await provisioner.reprovision(reason)
                setup.point_at(identity)
                if moved:
                    await self._settle_move(identities, identity)
                else:
                    await self._sync(identities, "provisioned")
            except EdgekeeperError as exc:
                provisioner.failed(exc, None)
                log.error(
                    "provisioning again failed; the identity in force is kept",
                    extra=fields(error=exc.render()),
                )
                if not done.done():
                    done.set_exception(exc)
                continue
            if not done.done():
                done.set_result(identity)

    async def _settle_move(self, identities: ModuleIdentities, identity: DeviceIdentity) -> None:
        await identities.clear()
        await self._sync(identities, "provisioned")
        await self._moved(f"the device is now {identity.device_id!r} on {identity.hub or 'no hub'}")

    async def _sync(self, identities: ModuleIdentities, why: str) -> None:
        """Bring the hub in line with the identities here; a failure is logged and left for the
        next provisioning or module change, never fatal (the cache keeps the device running)."""
        if self._setup is None or self._setup.modules is None:
            return
        try:
            if identities.pending:
                await identities.recover()
            if why == "provisioned":
                await identities.reconcile()
        except EdgekeeperError as exc:
            log.warning(
                "module identities not reconciled with the hub", extra=fields(error=exc.render())
            )

    def _refused(self, error: CloudUnauthorized) -> None:
        """A hub call was refused for the device's credentials: provision again (once per
        back-off interval, see `DeviceProvisioner.reprovision`), in the background."""
        if not self._ready.is_set():
            return
        done: asyncio.Future[DeviceIdentity] = asyncio.get_running_loop().create_future()
        done.add_done_callback(_quiet)
        self._requests.put_nowait((f"the hub refused the device: {error.render()}", done))


def _moved(before: DeviceIdentity, after: DeviceIdentity) -> bool:
    """True if the device changed hub or device id in a way its module identities do not
    survive: a local device (no hub) renamed by a new `hostname` keeps its local identities."""
    return not after.same_place(before) and bool(before.hub or after.hub)


def _quiet(future: asyncio.Future[DeviceIdentity]) -> None:
    if not future.cancelled():
        future.exception()
