"""The reconciler: drives the container engine towards the desired modules, woken by events.

It subscribes to the engine's events for containers carrying our owner label, then plans and acts
(`firmware.runtime.plan`) whenever something happens: a container dies or disappears, a spec
changes, a back-off delay ends. There is no polling: between wake-ups it waits on an event and, at
most, one timer for the earliest back-off deadline. A lost engine (the event stream ends, the
socket refuses) is retried with back-off; callers meanwhile get `RuntimeUnavailable`.

Image pulls run in the background, so a slow or failing pull never holds up the supervision of
the other modules; a failed pull, create or hook is retried after a growing delay. Module hooks
(`firmware.runtime.hooks`) run before each create and after a module is removed.

The agent is a module like the others with one more rule, the watchdog: it is always wanted, and
it is restarted until `[watchdog] max_retries` consecutive failures, after which the daemon is
degraded and the agent left alone until a person acts.
"""

from __future__ import annotations

import asyncio
import copy
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from firmware.errors import Conflict, EdgekeeperError, NotFound
from firmware.logs import fields, get_logger
from firmware.runtime.backoff import BackoffPolicy, RestartRecord
from firmware.runtime.desired import DesiredModules, ModuleChange, diff
from firmware.runtime.engine import DockerEngine, EngineError, RuntimeUnavailable
from firmware.runtime.hooks import ModuleHook
from firmware.runtime.plan import (
    Action,
    CreateContainer,
    ObservedContainer,
    RemoveContainer,
    RestartContainer,
    StartContainer,
    StopContainer,
    WaitUntil,
    plan,
)
from firmware.runtime.spec import (
    HASH_LABEL,
    MODULE_LABEL,
    OWNER_LABEL,
    OWNER_VALUE,
    DesiredStatus,
    ModuleSpec,
    PullPolicy,
)

log = get_logger("runtime")

_EXIT_CODE = re.compile(r"Exited \((-?\d+)\)")
# A failed action (pull, create, hook) is tried again after this, doubling while failures go on.
_RETRY_FIRST = 2.0
_RETRY_CAP = 60.0
_WAKING_ACTIONS = frozenset({"die", "destroy", "oom", "stop", "kill", "health_status: unhealthy"})


@dataclass(frozen=True)
class ModuleIssue:
    """The last thing that went wrong for a module, shown in `list` and `GET /modules`."""

    message: str
    at: float


class Reconciler:
    """Keeps the engine's containers matching the desired modules. Run it as a daemon service."""

    name = "runtime"

    def __init__(
        self,
        engine: DockerEngine,
        desired: DesiredModules,
        *,
        agent: ModuleSpec | None = None,
        agent_max_retries: int | None = None,
        policy: BackoffPolicy | None = None,
        run_blocking: Callable[..., Any] | None = None,
        hooks: tuple[ModuleHook, ...] = (),
        pull_credentials: Mapping[str, Mapping[str, str]] | None = None,
        owner: str = OWNER_VALUE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        self.owner = owner
        self._owned_label = {OWNER_LABEL: owner}
        self._desired_store = desired
        self._agent = agent
        self._agent_max_retries = agent_max_retries
        self._policy = policy or BackoffPolicy()
        self._run_blocking = run_blocking
        self._hooks: list[ModuleHook] = list(hooks)
        self._pull_credentials = dict(pull_credentials or {})
        self._clock = clock
        self._specs: dict[str, ModuleSpec] = {}
        self._records: dict[str, RestartRecord] = {}
        self._issues: dict[str, ModuleIssue] = {}
        self._expected_exits: set[str] = set()
        self._removed: set[str] = set()
        self._retry_delay = _RETRY_FIRST
        self._pulls: dict[str, asyncio.Future[None]] = {}
        self._pull_failures: dict[str, tuple[float, str, int]] = {}
        self._activity: dict[str, str] = {}
        self._exited: dict[str, int] = {}
        self._wake = asyncio.Event()
        self._loaded = asyncio.Event()
        self._lock = asyncio.Lock()
        self.available = False
        self.degraded: str | None = None

    # -- what callers see ------------------------------------------------------------------------

    async def loaded(self) -> None:
        """Wait until the stored modules are loaded (right after the service starts)."""
        await self._loaded.wait()

    def modules(self) -> dict[str, ModuleSpec]:
        """Every wanted module, the agent included."""
        specs = dict(self._specs)
        if self._agent is not None:
            specs[self._agent.name] = self._agent
        return specs

    def spec(self, name: str) -> ModuleSpec:
        try:
            return self.modules()[name]
        except KeyError:
            raise NotFound(
                f"no module named {name!r}",
                hint="`edgekeeper list` shows the modules this gateway runs",
            ) from None

    def issue(self, name: str) -> ModuleIssue | None:
        return self._issues.get(name)

    def activity(self, name: str) -> str | None:
        """What is under way for the module right now (an image pull), if anything."""
        return self._activity.get(name)

    def record(self, name: str) -> RestartRecord | None:
        return self._records.get(name)

    def backoff_left(self, name: str) -> float:
        """Seconds before the module may be restarted again (0 when not backing off)."""
        record = self._records.get(name)
        if record is None:
            return 0.0
        return max(0.0, record.not_before - self._clock())

    def add_hook(self, hook: ModuleHook) -> None:
        """Run `hook` around every container created or module removed from now on."""
        self._hooks.append(hook)

    def is_agent(self, name: str) -> bool:
        return self._agent is not None and name == self._agent.name

    async def apply(
        self, specs: Mapping[str, ModuleSpec], *, dry_run: bool = False
    ) -> list[ModuleChange]:
        """Replace every non-agent module at once (a deployment); returns what changes."""
        await self._loaded.wait()
        wanted = {name: spec for name, spec in specs.items() if not self.is_agent(name)}
        async with self._lock:
            changes = diff(self._specs, wanted)
            if not dry_run and changes:
                await self._blocking(self._desired_store.save, wanted)
                self._specs = wanted
                for change in changes:
                    self._records.pop(change.name, None)
                    self._issues.pop(change.name, None)
                    if change.after is None:
                        self._removed.add(change.name)
                log.info("deployment applied", extra=fields(changes=len(changes)))
                self._wake.set()
        return changes

    async def put(self, spec: ModuleSpec) -> None:
        await self._edit(lambda specs: specs.__setitem__(spec.name, spec), spec.name)

    async def delete(self, name: str) -> None:
        self.spec(name)
        await self._edit(lambda specs: specs.pop(name), name)

    async def set_status(self, name: str, status: DesiredStatus) -> None:
        spec = self.spec(name)
        if status is DesiredStatus.RUNNING:
            self._records.pop(name, None)
            if self.is_agent(name):
                self.degraded = None
        if spec.status is status:
            self._wake.set()
            return
        changed = ModuleSpec(**{**spec.__dict__, "status": status})
        await self._edit(lambda specs: specs.__setitem__(name, changed), name)

    async def restart(self, name: str) -> None:
        self.spec(name)
        containers = await self._owned(name)
        if not containers:
            raise NotFound(f"module {name!r} has no container yet", hint="try again in a moment")
        self._expected_exits.add(containers[0].container_id)
        await self.engine.restart(containers[0].container_id)

    async def container_id(self, name: str) -> str | None:
        self.spec(name)
        containers = await self._owned(name)
        return containers[0].container_id if containers else None

    # -- the service -----------------------------------------------------------------------------

    async def run(self, ctx: Any = None) -> None:
        self._specs = await self._blocking(self._desired_store.load)
        self._loaded.set()
        try:
            await self._supervise()
        finally:
            pulls = list(self._pulls.values())
            for pull in pulls:
                pull.cancel()
            await asyncio.gather(*pulls, return_exceptions=True)

    async def _supervise(self) -> None:
        retry = 1.0
        while True:
            try:
                version = await self.engine.negotiate()
                log.info("container engine reachable", extra=fields(api=version))
                self.available = True
                retry = 1.0
                await self._serve()
            except RuntimeUnavailable as exc:
                if self.available:
                    log.warning("container engine lost; retrying", extra=fields(error=exc.message))
                else:
                    log.debug("container engine unreachable", extra=fields(error=exc.message))
            self.available = False
            await asyncio.sleep(retry)
            retry = min(retry * 2, 30.0)

    async def _serve(self) -> None:
        async with self.engine.subscribe(self._owned_label) as events:
            watcher = asyncio.ensure_future(self._watch(events))
            try:
                while True:
                    self._wake.clear()
                    deadline = await self._reconcile_once()
                    timeout = None if deadline is None else max(0.0, deadline - self._clock())
                    woke = asyncio.ensure_future(self._wake.wait())
                    done, _ = await asyncio.wait(
                        {woke, watcher}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                    )
                    woke.cancel()
                    if watcher in done:
                        watcher.result()
                        raise RuntimeUnavailable("the container engine closed its event stream")
            finally:
                watcher.cancel()
                await asyncio.gather(watcher, return_exceptions=True)

    async def _watch(self, events: Any) -> None:
        async for event in events:
            action = event.get("Action", "")
            module = event.get("Actor", {}).get("Attributes", {}).get(MODULE_LABEL)
            if module is None:
                continue
            now = self._clock()
            if action == "start":
                self._exited.pop(event.get("id", ""), None)
                self._records.setdefault(module, RestartRecord()).started(now)
            elif action == "die":
                self._exited[event.get("id", "")] = int(_exit_of(event) or -1)
                if event.get("id") in self._expected_exits:
                    self._expected_exits.discard(event["id"])
                else:
                    self._records.setdefault(module, RestartRecord()).stopped(now, self._policy)
                    log.info("module exited", extra=fields(module=module, exit=_exit_of(event)))
            if action in _WAKING_ACTIONS:
                self._wake.set()

    async def _reconcile_once(self) -> float | None:
        async with self._lock:
            observed = [
                self._observe(c) for c in await self.engine.list_containers(self._owned_label)
            ]
            present = {c.container_id for c in observed}
            self._expected_exits &= present
            self._exited = {cid: code for cid, code in self._exited.items() if cid in present}
            wanted = self.modules()
            actions = self._watchdog(plan(wanted, observed, self._records, self._clock()))
            deadline: float | None = None
            failed = False
            for action in actions:
                if isinstance(action, WaitUntil):
                    deadline = action.when if deadline is None else min(deadline, action.when)
                    continue
                if not await self._act(action):
                    failed = True
                if isinstance(action, RemoveContainer) and action.module not in wanted:
                    self._removed.add(action.module)
            for module in sorted(self._removed - set(wanted)):
                if module not in self._issues:
                    await self._after_remove(module)
            self._removed.clear()
            if not failed:
                self._retry_delay = _RETRY_FIRST
                return deadline
            retry = self._clock() + self._retry_delay
            self._retry_delay = min(self._retry_delay * 2, _RETRY_CAP)
            return retry if deadline is None else min(deadline, retry)

    def _watchdog(self, actions: list[Action]) -> list[Action]:
        if self._agent is None or self._agent_max_retries is None:
            return actions
        record = self._records.get(self._agent.name)
        failures = record.failures if record else 0
        if failures <= self._agent_max_retries:
            return actions
        reason = (
            f"agent {self._agent.name!r} failed {failures} times in a row, more than "
            f"[watchdog] max_retries = {self._agent_max_retries}"
        )
        if self.degraded != reason:
            self.degraded = reason
            log.error("watchdog gave up on the agent", extra=fields(reason=reason))
        restarting = (CreateContainer, StartContainer, RestartContainer, WaitUntil)
        return [
            a
            for a in actions
            if not (isinstance(a, restarting) and _module_of(a) == self._agent.name)
        ]

    async def _act(self, action: Action) -> bool:
        """Carry out one action; False (and the module's issue set) if it failed."""
        module = _module_of(action)
        try:
            if isinstance(action, CreateContainer):
                await self._create(action.spec, action.start)
            elif isinstance(action, StartContainer):
                await self.engine.start(action.container_id)
                self._records.setdefault(module, RestartRecord()).started(self._clock())
                log.info("module started", extra=fields(module=module))
            elif isinstance(action, RestartContainer):
                self._expected_exits.add(action.container_id)
                await self.engine.restart(action.container_id)
                log.info("module restarted", extra=fields(module=module))
            elif isinstance(action, StopContainer):
                self._expected_exits.add(action.container_id)
                await self.engine.stop(action.container_id)
                log.info("module stopped on request", extra=fields(module=module))
            elif isinstance(action, RemoveContainer):
                self._expected_exits.add(action.container_id)
                await self.engine.remove(action.container_id, force=True)
                log.info("module container removed", extra=fields(module=module))
            self._issues.pop(module, None)
            return True
        except RuntimeUnavailable:
            raise
        except EdgekeeperError as exc:
            self._issues[module] = ModuleIssue(exc.render(), time.time())
            log.warning("module action failed", extra=fields(module=module, error=exc.render()))
            return False

    async def _create(self, spec: ModuleSpec, start: bool) -> None:
        if not await self._image_ready(spec):
            return
        body = self._container_body(spec)
        for hook in list(self._hooks):
            await hook.before_create(spec, body)
        container = await self.engine.create_container(spec.name, body)
        log.info("module created", extra=fields(module=spec.name, image=spec.image))
        if start:
            await self.engine.start(container)
            self._records.setdefault(spec.name, RestartRecord()).started(self._clock())
            log.info("module started", extra=fields(module=spec.name))

    async def _image_ready(self, spec: ModuleSpec) -> bool:
        """True if the module's image is here; otherwise a pull runs in the background (the
        reconciler keeps supervising the other modules) and wakes it when done."""
        try:
            await self.engine.inspect_image(spec.image)
            return True
        except NotFound:
            if spec.pull_policy is PullPolicy.NEVER:
                raise NotFound(
                    f"image {spec.image} of module {spec.name!r} is not on this gateway and its "
                    'imagePullPolicy is "never"',
                    hint='load the image (docker load) or set imagePullPolicy to "on-create"',
                ) from None
        failed = self._pull_failures.get(spec.image)
        if failed is not None and self._clock() < failed[0]:
            raise EngineError(failed[1], hint="the pull is tried again later")
        if spec.image not in self._pulls:
            self._pulls[spec.image] = asyncio.ensure_future(self._pull(spec))
        return False

    async def _pull(self, spec: ModuleSpec) -> None:
        log.info("pulling image", extra=fields(module=spec.name, image=spec.image))
        layers: dict[str, str] = {}
        try:
            credentials = self._pull_credentials.get(spec.name)
            async for progress in self.engine.pull(spec.image, credentials):
                if progress.get("id") and progress.get("status"):
                    layers[progress["id"]] = progress["status"]
                    done = sum(s in ("Pull complete", "Already exists") for s in layers.values())
                    self._activity[spec.name] = f"pulling {spec.image}: {done}/{len(layers)} layers"
        except EdgekeeperError as exc:
            tries = self._pull_failures.get(spec.image, (0.0, "", 0))[2] + 1
            delay = min(_RETRY_FIRST * 2 ** (tries - 1), _RETRY_CAP * 5)
            message = f"pulling {spec.image} failed: {exc.message}"
            self._pull_failures[spec.image] = (self._clock() + delay, message, tries)
            self._issues[spec.name] = ModuleIssue(message, time.time())
            log.warning("image pull failed", extra=fields(module=spec.name, error=exc.render()))
        else:
            self._pull_failures.pop(spec.image, None)
            log.info("image pulled", extra=fields(module=spec.name, image=spec.image))
        finally:
            self._pulls.pop(spec.image, None)
            self._activity.pop(spec.name, None)
            self._wake.set()

    def _container_body(self, spec: ModuleSpec) -> dict[str, Any]:
        body = copy.deepcopy(dict(spec.create_options))
        body["Image"] = spec.image
        body["Env"] = [*body.get("Env", []), *(f"{k}={v}" for k, v in sorted(spec.env.items()))]
        body["Labels"] = {**body.get("Labels", {}), **spec.labels(self.owner)}
        return body

    async def _after_remove(self, module: str) -> None:
        for hook in list(self._hooks):
            try:
                await hook.after_remove(module)
            except EdgekeeperError as exc:
                log.warning(
                    "module clean-up failed", extra=fields(module=module, error=exc.render())
                )

    async def _owned(self, name: str) -> list[ObservedContainer]:
        containers = await self.engine.list_containers({**self._owned_label, MODULE_LABEL: name})
        observed = [self._observe(c) for c in containers]
        observed.sort(key=lambda c: c.state != "running")
        return observed

    async def _edit(self, change: Callable[[dict[str, ModuleSpec]], object], name: str) -> None:
        await self._loaded.wait()
        if self.is_agent(name):
            raise Conflict(
                f"module {name!r} is the agent; it is defined by [agent] in config.toml",
                hint="edit [agent] and reload the daemon (SIGHUP)",
            )
        async with self._lock:
            specs = dict(self._specs)
            change(specs)
            await self._blocking(self._desired_store.save, specs)
            self._specs = specs
            self._records.pop(name, None)
            self._issues.pop(name, None)
            if name not in specs:
                self._removed.add(name)
        self._wake.set()

    async def _blocking(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self._run_blocking is None:
            return fn(*args)
        return await self._run_blocking(fn, *args)

    def _observe(self, container: Any) -> ObservedContainer:
        """The engine's listing, corrected by the events: the list can lag a "die" event."""
        if container.state == "running" and container.container_id in self._exited:
            return ObservedContainer(
                container_id=container.container_id,
                module=container.labels.get(MODULE_LABEL, container.name),
                spec_hash=container.labels.get(HASH_LABEL, ""),
                state="exited",
                exit_code=self._exited[container.container_id],
            )
        exited = _EXIT_CODE.search(container.status)
        healthy = None
        if "(unhealthy)" in container.status:
            healthy = False
        elif "(healthy)" in container.status:
            healthy = True
        return ObservedContainer(
            container_id=container.container_id,
            module=container.labels.get(MODULE_LABEL, container.name),
            spec_hash=container.labels.get(HASH_LABEL, ""),
            state=container.state,
            exit_code=int(exited.group(1)) if exited else 0,
            healthy=healthy,
            ever_started=container.state != "created",
        )


def _module_of(action: Action) -> str:
    if isinstance(action, CreateContainer):
        return action.spec.name
    return action.module


def _exit_of(event: Mapping[str, Any]) -> str:
    return str(event.get("Actor", {}).get("Attributes", {}).get("exitCode", ""))
