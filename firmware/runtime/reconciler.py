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
degraded and the agent left alone until a person acts. Its spec comes from `[agent]`; the agent
may replace it through the management API (edgeAgent updates itself when a deployment changes
it), and that spec stands until `[agent]` itself changes (`firmware.runtime.desired`).

Containers join the engine network `[runtime] network` (made when missing, as IoT Edge does)
unless their createOptions choose a network mode.

Every spec passes admission (`firmware.runtime.admission`) before it is taken (`put`, `apply`),
when it is loaded from the state store, and again before each create. A stored spec that is
refused or does not parse is a `RefusedModule`: listed as failed with the reason, never run, kept
in the store until a person replaces or deletes it. One module's failure, expected or not, is
that module's issue: it never stops the supervision of the others.

What it keeps per module (restart record, last issue, pull under way) lives in one `ModuleState`;
callers read modules through the read models of `firmware.runtime.status`, never its fields.
"""

from __future__ import annotations

import asyncio
import copy
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from firmware.errors import BadRequest, Conflict, EdgekeeperError, NotFound, StateError
from firmware.logs import fields, get_logger
from firmware.runtime.admission import AdmissionPolicy
from firmware.runtime.backoff import BackoffPolicy, RestartRecord
from firmware.runtime.container import (
    ContainerRuntime,
    ContainerSummary,
    EngineError,
    EngineVersion,
    RuntimeUnavailable,
)
from firmware.runtime.desired import DesiredModules, ModuleChange, diff
from firmware.runtime.hooks import ModuleHook
from firmware.runtime.logstream import LogFrame
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
    RestartPolicy,
)
from firmware.runtime.status import (
    ModuleStatus,
    ModuleUsage,
    RunningContainer,
    RuntimeStatus,
    RuntimeSummary,
    count_by_status,
    module_status,
    module_usage,
    running_container,
)

log = get_logger("runtime")

_EXIT_CODE = re.compile(r"Exited \((-?\d+)\)")
# A failed action (pull, create, hook) is tried again after this, doubling while failures go on.
_RETRY_FIRST = 2.0
_RETRY_CAP = 60.0
_WAKING_ACTIONS = frozenset({"die", "destroy", "oom", "stop", "kill", "health_status: unhealthy"})


@dataclass(frozen=True)
class ModuleIssue:
    """The last thing that went wrong for a module, shown in `list` and `GET /modules`;
    `failed` for an unexpected error (a bug), which shows the module failed."""

    message: str
    at: float
    failed: bool = False


@dataclass(frozen=True)
class RefusedModule:
    """A stored module that admission refused or that does not parse: shown failed with the
    reason, never run, and written back as `document` until a person replaces or deletes it."""

    spec: ModuleSpec  # what can be shown of it
    reason: str
    document: object


@dataclass
class ModuleState:
    """What the reconciler keeps about one module besides its spec and its containers."""

    restarts: RestartRecord = field(default_factory=RestartRecord)
    issue: ModuleIssue | None = None
    activity: str | None = None  # what is under way for it (an image pull)
    cleanup_due: bool = False  # no longer wanted: the hooks' `after_remove` has still to run
    # someone asked it to start: its stopped container is started once, whatever its restart
    # policy (edgeAgent's start after a stop), until a start or create has been done
    start_requested: bool = False

    def fresh_start(self) -> None:
        """A changed spec or a person's start: no failures counted, no issue."""
        self.restarts = RestartRecord()
        self.issue = None

    def note(self) -> str:
        """What the module's status says instead of the engine's: its activity or its issue."""
        return self.activity or (self.issue.message if self.issue else "")


@dataclass(frozen=True)
class PullFailure:
    """An image whose pull failed: not tried again before `retry_at`."""

    retry_at: float
    message: str
    tries: int


class Reconciler:
    """Keeps the engine's containers matching the desired modules. Run it as a daemon service."""

    name = "runtime"

    def __init__(
        self,
        engine: ContainerRuntime,
        desired: DesiredModules,
        *,
        agent: ModuleSpec | None = None,
        agent_max_retries: int | None = None,
        policy: BackoffPolicy | None = None,
        run_blocking: Callable[..., Any] | None = None,
        hooks: tuple[ModuleHook, ...] = (),
        pull_credentials: Mapping[str, Mapping[str, str]] | None = None,
        admission: AdmissionPolicy | None = None,
        owner: str = OWNER_VALUE,
        clock: Callable[[], float] = time.monotonic,
        start_gate: Callable[[], Awaitable[None]] | None = None,
        network: str | None = None,
    ) -> None:
        self.engine = engine
        self._network = network
        self._start_gate = start_gate
        self.owner = owner
        self._owned_label = {OWNER_LABEL: owner}
        self._desired_store = desired
        self._agent = agent
        # the hash of the config's agent spec, which an agent update through the API replaces
        self._agent_base = agent.document_hash() if agent is not None else ""
        self._agent_max_retries = agent_max_retries
        self._policy = policy or BackoffPolicy()
        self._run_blocking = run_blocking
        self._hooks: list[ModuleHook] = list(hooks)
        self._pull_credentials = dict(pull_credentials or {})
        self._admission = admission or AdmissionPolicy()
        self._clock = clock
        self._specs: dict[str, ModuleSpec] = {}
        self._refused: dict[str, RefusedModule] = {}
        # why the stored modules could not be read at all; edits are refused while it is set
        self._unreadable: StateError | None = None
        self._states: dict[str, ModuleState] = {}
        self._retry_delay = _RETRY_FIRST
        # by image reference
        self._pulls: dict[str, asyncio.Future[None]] = {}
        self._pull_failures: dict[str, PullFailure] = {}
        # by container id: exits we caused, and exit codes from "die" events the listing may lag
        self._expected_exits: set[str] = set()
        self._exited: dict[str, int] = {}
        self._wake = asyncio.Event()
        self._loaded = asyncio.Event()
        self._lock = asyncio.Lock()
        self.available = False
        self.degraded: str | None = None
        # why no container is created yet (the device has no identity), None once supervising
        self.waiting: str | None = None
        # why every container is to be created again at the next pass (`recreate_all`)
        self._recreate: str | None = None

    # -- what callers see ------------------------------------------------------------------------

    async def loaded(self) -> None:
        """Wait until the stored modules are loaded (right after the service starts)."""
        await self._loaded.wait()

    def modules(self) -> dict[str, ModuleSpec]:
        """Every module of the gateway, the agent and the refused ones included."""
        specs = {name: refused.spec for name, refused in self._refused.items()}
        specs.update(self._wanted())
        return specs

    def _wanted(self) -> dict[str, ModuleSpec]:
        """The modules to supervise: the admitted ones and the agent."""
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
        """The last thing that went wrong for the module, until an action for it succeeds."""
        state = self._states.get(name)
        return state.issue if state else None

    def add_hook(self, hook: ModuleHook) -> None:
        """Run `hook` around every container created or module removed from now on."""
        self._hooks.append(hook)

    def is_agent(self, name: str) -> bool:
        return self._agent is not None and name == self._agent.name

    @property
    def agent_name(self) -> str | None:
        return None if self._agent is None else self._agent.name

    async def apply(
        self, specs: Mapping[str, ModuleSpec], *, dry_run: bool = False
    ) -> list[ModuleChange]:
        """Replace every non-agent module at once (a deployment); returns what changes."""
        await self._loaded.wait()
        wanted = {name: spec for name, spec in specs.items() if not self.is_agent(name)}
        for spec in wanted.values():
            await self._admit(spec)
        async with self._lock:
            shown = {name: refused.spec for name, refused in self._refused.items()}
            changes = diff({**shown, **self._specs}, wanted)
            if not dry_run and (changes or self._refused):
                self._check_readable()
                await self._blocking(self._desired_store.save, wanted)
                self._specs = wanted
                self._refused = {}
                for change in changes:
                    state = self._state(change.name)
                    state.fresh_start()
                    if change.after is None:
                        state.cleanup_due = True
                log.info("deployment applied", extra=fields(changes=len(changes)))
                self._wake.set()
        return changes

    async def put(self, spec: ModuleSpec) -> None:
        """Add or replace one module, once admitted (`BadRequest` naming the field if not). For
        the agent this replaces its spec from `[agent]` (always running, always restarted)."""
        await self._admit(spec)
        if self.is_agent(spec.name):
            await self._put_agent(spec)
            return
        await self._edit(lambda specs: specs.__setitem__(spec.name, spec), spec.name)

    async def prepare(self, spec: ModuleSpec) -> None:
        """IoT Edge's prepare-update: admit `spec` and, unless its pull policy is never, pull its
        image now (a newer image under the same tag included), so the create or update that
        follows does not wait for a download. A failed pull of an image the gateway has is only
        logged: an offline gateway can still be updated. The module itself does not change."""
        await self._admit(spec)
        if spec.pull_policy is PullPolicy.NEVER:
            return
        try:
            await self.engine.inspect_image(spec.image)
            present = True
        except NotFound:
            present = False
        failed = self._pull_failures.get(spec.image)
        if failed is not None and self._clock() < failed.retry_at:
            if present:
                return
            raise EngineError(failed.message, hint="the pull is tried again later")
        await asyncio.shield(self._pull_of(spec))
        failed = self._pull_failures.get(spec.image)
        if failed is not None and not present:
            raise EngineError(failed.message, hint="check the image name and registry credentials")

    async def _put_agent(self, spec: ModuleSpec) -> None:
        agent = replace(spec, restart_policy=RestartPolicy.ALWAYS, status=DesiredStatus.RUNNING)
        await self._loaded.wait()
        async with self._lock:
            await self._blocking(self._desired_store.save_agent, agent, self._agent_base)
            self._agent = agent
            self._state(agent.name).fresh_start()
            self.degraded = None
        log.info("the agent updated itself", extra=fields(module=agent.name, image=agent.image))
        self._wake.set()

    async def delete(self, name: str) -> None:
        self.spec(name)
        await self._edit(lambda specs: specs.pop(name, None), name)

    async def set_status(self, name: str, status: DesiredStatus) -> None:
        spec = self.spec(name)
        self._not_refused(name)
        self._state(name).start_requested = status is DesiredStatus.RUNNING
        if status is DesiredStatus.RUNNING:
            self._state(name).restarts = RestartRecord()
            if self.is_agent(name):
                self.degraded = None
        if spec.status is status:
            self._wake.set()
            return
        changed = ModuleSpec(**{**spec.__dict__, "status": status})
        await self._edit(lambda specs: specs.__setitem__(name, changed), name)

    async def restart(self, name: str) -> None:
        self.spec(name)
        self._not_refused(name)
        containers = await self._owned(name)
        if not containers:
            raise NotFound(f"module {name!r} has no container yet", hint="try again in a moment")
        self._expected_exits.add(containers[0].container_id)
        await self.engine.restart(containers[0].container_id)

    def recreate_all(self, reason: str) -> None:
        """Have the next pass remove every module's container, the agent's too, and create each
        again from its spec (`reason`: what changed that the containers must see). Kept until a
        pass runs, so an engine that is down now gets it when it is back."""
        self._recreate = reason
        log.warning("every module will be created again", extra=fields(reason=reason))
        self._wake.set()

    # -- read models ---------------------------------------------------------------------------

    async def statuses(self, names: Sequence[str] | None = None) -> list[ModuleStatus]:
        """The status of the named modules (default: every wanted module, by name); `NotFound`
        for a name that is not wanted."""
        specs = self.modules()
        wanted = sorted(specs) if names is None else [self.spec(name).name for name in names]
        containers = await self.engine.list_containers(self._owned_label)
        chosen: dict[str, ContainerSummary] = {}
        for container in sorted(containers, key=lambda c: c.state != "running"):
            chosen.setdefault(container.labels.get(MODULE_LABEL, container.name), container)
        inspected = await asyncio.gather(*(self._inspect(chosen.get(name)) for name in wanted))
        return [self._status(specs[name], doc) for name, doc in zip(wanted, inspected, strict=True)]

    def accepted_status(self, spec: ModuleSpec) -> ModuleStatus:
        """The status of `spec` just written to the desired state, before the engine is asked."""
        return self._status(spec, None)

    async def summary(self) -> RuntimeSummary:
        """The engine and the modules' statuses at a glance; an unreachable engine is reported."""
        version: EngineVersion | None = None
        counts = {}
        error: str | None = None
        try:
            version = await self.engine.version()
            counts = count_by_status(await self.statuses())
        except EdgekeeperError as exc:
            error = exc.render()
        return RuntimeSummary(
            socket=self.engine.socket_path,
            version=version,
            error=error,
            modules=len(self.modules()),
            by_status=counts,
            degraded=self.degraded,
        )

    async def engine_version(self) -> EngineVersion:
        return await self.engine.version()

    async def usage(self) -> list[ModuleUsage]:
        """Resource use of every running module, by name (modules whose sample fails left out)."""
        containers = await self.engine.list_containers(self._owned_label)
        running = [c for c in containers if c.state == "running"]
        samples = await asyncio.gather(
            *(self.engine.stats(c.container_id) for c in running), return_exceptions=True
        )
        usage = []
        for container, sample in zip(running, samples, strict=True):
            if isinstance(sample, EdgekeeperError):
                continue
            if isinstance(sample, BaseException):
                raise sample
            usage.append(module_usage(container.labels.get(MODULE_LABEL, container.name), sample))
        return sorted(usage, key=lambda u: u.name)

    async def running_container(self, name: str) -> RunningContainer | None:
        """The module's container if it is running now; None otherwise or for an unknown name."""
        try:
            container_id = await self._container_id(name)
            if container_id is None:
                return None
            doc = await self.engine.inspect(container_id)
        except NotFound:
            return None
        return running_container(doc, container_id)

    async def logs(
        self,
        name: str,
        *,
        tail: int | None = None,
        since: int | None = None,
        until: int | None = None,
        timestamps: bool = False,
        follow: bool = False,
    ) -> AsyncGenerator[LogFrame, None]:
        """The output of the module's container; `NotFound` if it has none. Closing the
        generator ends the engine's stream."""
        container = await self._container_id(name)
        if container is None:
            raise NotFound(f"module {name!r} has no container yet, so no logs")
        frames = self.engine.logs(
            container, tail=tail, since=since, until=until, timestamps=timestamps, follow=follow
        )
        return _closing(frames)

    # -- the service -----------------------------------------------------------------------------

    async def run(self) -> None:
        await self._load()
        self._loaded.set()
        if self._start_gate is not None:
            self.waiting = "the device identity (modules start once the device is provisioned)"
            await self._start_gate()
            self.waiting = None
        try:
            await self._supervise()
        finally:
            pulls = list(self._pulls.values())
            for pull in pulls:
                pull.cancel()
            await asyncio.gather(*pulls, return_exceptions=True)

    async def _load(self) -> None:
        """The stored modules, each admitted; refused and unusable ones are kept apart. A store
        that cannot be read at all leaves the agent supervised and edits refused."""
        self._specs, self._refused, self._unreadable = {}, {}, None
        await self._load_agent()
        try:
            stored = await self._blocking(self._desired_store.load)
        except StateError as exc:
            self._unreadable = exc
            log.error(
                "stored modules cannot be read; only the agent is supervised",
                extra=fields(error=exc.render()),
            )
            return
        for name, unusable in stored.unusable.items():
            spec = ModuleSpec.salvage(name, unusable.document)
            self._refuse_stored(RefusedModule(spec, unusable.problem, unusable.document))
        for name, spec in stored.specs.items():
            refusal = await self._blocking(self._admission.refusal, spec.create_options)
            if refusal is None:
                self._specs[name] = spec
                continue
            field_name = refusal.field_under("settings.createOptions")
            reason = f"refused at admission: field '{field_name}' {refusal.reason} ({refusal.hint})"
            self._refuse_stored(RefusedModule(spec, reason, spec.to_api(credentials=True)))

    async def _load_agent(self) -> None:
        """Take the agent's own update over `[agent]` if it was made over this config's agent
        and is still admitted."""
        if self._agent is None:
            return
        try:
            stored = await self._blocking(self._desired_store.load_agent, self._agent_base)
        except StateError as exc:
            log.error("the agent's stored update cannot be read", extra=fields(error=exc.render()))
            return
        if stored is None or stored.name != self._agent.name:
            return
        refusal = await self._blocking(self._admission.refusal, stored.create_options)
        if refusal is not None:
            log.error(
                "the agent's stored update is refused at admission; [agent] is used",
                extra=fields(error=f"{refusal.field_under('createOptions')} {refusal.reason}"),
            )
            return
        self._agent = stored

    def _refuse_stored(self, refused: RefusedModule) -> None:
        self._refused[refused.spec.name] = refused
        log.error(
            "stored module not started",
            extra=fields(module=refused.spec.name, error=refused.reason),
        )

    async def _supervise(self) -> None:
        retry = 1.0
        while True:
            try:
                version = await self.engine.negotiate()
                log.info("container engine reachable", extra=fields(api=version))
                await self._ensure_network()
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

    async def _ensure_network(self) -> None:
        """Make `[runtime] network` unless it exists. An engine that refuses (no address pool
        left, say) is logged: the modules that join the network then fail with the engine's
        reason, and the others run."""
        if self._network is None:
            return
        try:
            if await self.engine.ensure_network(self._network):
                log.info("engine network created", extra=fields(network=self._network))
        except RuntimeUnavailable:
            raise
        except EdgekeeperError as exc:
            log.error(
                "engine network cannot be made",
                extra=fields(network=self._network, error=exc.render()),
            )

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

    async def _watch(self, events: AsyncIterator[dict[str, Any]]) -> None:
        async for event in events:
            action = event.get("Action", "")
            module = event.get("Actor", {}).get("Attributes", {}).get(MODULE_LABEL)
            if module is None:
                continue
            now = self._clock()
            if action == "start":
                self._exited.pop(event.get("id", ""), None)
                self._state(module).restarts.started(now)
            elif action == "die":
                self._exited[event.get("id", "")] = int(_exit_of(event) or -1)
                if event.get("id") in self._expected_exits:
                    self._expected_exits.discard(event["id"])
                else:
                    self._state(module).restarts.stopped(now, self._policy)
                    log.info("module exited", extra=fields(module=module, exit=_exit_of(event)))
            if action in _WAKING_ACTIONS:
                self._wake.set()

    async def _reconcile_once(self) -> float | None:
        async with self._lock:
            if self._recreate is not None:
                await self._remove_all()
            observed = [
                self._observe(c) for c in await self.engine.list_containers(self._owned_label)
            ]
            present = {c.container_id for c in observed}
            self._expected_exits &= present
            self._exited = {cid: code for cid, code in self._exited.items() if cid in present}
            wanted = self._wanted()
            records = {name: state.restarts for name, state in self._states.items()}
            starts = {name for name, state in self._states.items() if state.start_requested}
            actions = self._watchdog(plan(wanted, observed, records, self._clock(), starts))
            deadline: float | None = None
            failed = False
            for action in actions:
                if isinstance(action, WaitUntil):
                    deadline = action.when if deadline is None else min(deadline, action.when)
                    continue
                if not await self._act(action):
                    failed = True
                elif isinstance(action, StartContainer | CreateContainer):
                    self._state(_module_of(action)).start_requested = False
                if isinstance(action, RemoveContainer) and action.module not in wanted:
                    self._state(action.module).cleanup_due = True
            for module, state in sorted(self._states.items()):
                if state.cleanup_due and module not in wanted and state.issue is None:
                    await self._after_remove(module)
                state.cleanup_due = False
            # Modules no longer wanted are forgotten once their clean-up had its chance.
            self._states = {name: s for name, s in self._states.items() if name in wanted}
            if not failed:
                self._retry_delay = _RETRY_FIRST
                return deadline
            retry = self._clock() + self._retry_delay
            self._retry_delay = min(self._retry_delay * 2, _RETRY_CAP)
            return retry if deadline is None else min(deadline, retry)

    async def _remove_all(self) -> None:
        for container in await self.engine.list_containers(self._owned_label):
            self._expected_exits.add(container.container_id)
            await self.engine.remove(container.container_id, force=True)
        log.info("every module's container removed", extra=fields(reason=self._recreate))
        self._recreate = None

    def _watchdog(self, actions: list[Action]) -> list[Action]:
        if self._agent is None or self._agent_max_retries is None:
            return actions
        state = self._states.get(self._agent.name)
        failures = state.restarts.failures if state else 0
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
                self._state(module).restarts.started(self._clock())
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
            self._state(module).issue = None
            return True
        except RuntimeUnavailable:
            raise
        except EdgekeeperError as exc:
            self._state(module).issue = ModuleIssue(exc.render(), time.time())
            log.warning("module action failed", extra=fields(module=module, error=exc.render()))
            return False
        except Exception as exc:
            message = f"internal error: {type(exc).__name__}: {exc}"
            self._state(module).issue = ModuleIssue(message, time.time(), failed=True)
            log.error("module action failed", exc_info=exc, extra=fields(module=module))
            return False

    async def _create(self, spec: ModuleSpec, start: bool) -> None:
        await self._admit(spec)
        if not await self._image_ready(spec):
            return
        body = self._container_body(spec)
        for hook in list(self._hooks):
            await hook.before_create(spec, body)
        container = await self.engine.create_container(spec.name, body)
        log.info("module created", extra=fields(module=spec.name, image=spec.image))
        if start:
            await self.engine.start(container)
            self._state(spec.name).restarts.started(self._clock())
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
        if failed is not None and self._clock() < failed.retry_at:
            raise EngineError(failed.message, hint="the pull is tried again later")
        self._pull_of(spec)
        return False

    def _pull_of(self, spec: ModuleSpec) -> asyncio.Future[None]:
        """The pull of `spec`'s image under way, started now if there is none."""
        if spec.image not in self._pulls:
            self._pulls[spec.image] = asyncio.ensure_future(self._pull(spec))
        return self._pulls[spec.image]

    async def _pull(self, spec: ModuleSpec) -> None:
        log.info("pulling image", extra=fields(module=spec.name, image=spec.image))
        layers: dict[str, str] = {}
        try:
            credentials = spec.registry_auth or self._pull_credentials.get(spec.name)
            async for progress in self.engine.pull(spec.image, credentials):
                if progress.get("id") and progress.get("status"):
                    layers[progress["id"]] = progress["status"]
                    done = sum(s in ("Pull complete", "Already exists") for s in layers.values())
                    state = self._state(spec.name)
                    state.activity = f"pulling {spec.image}: {done}/{len(layers)} layers"
        except Exception as exc:
            previous = self._pull_failures.get(spec.image)
            tries = (previous.tries if previous else 0) + 1
            delay = min(_RETRY_FIRST * 2 ** (tries - 1), _RETRY_CAP * 5)
            bug = not isinstance(exc, EdgekeeperError)
            cause = f"internal error: {type(exc).__name__}: {exc}" if bug else str(exc)
            message = f"pulling {spec.image} failed: {cause}"
            self._pull_failures[spec.image] = PullFailure(self._clock() + delay, message, tries)
            self._state(spec.name).issue = ModuleIssue(message, time.time(), failed=bug)
            log.warning(
                "image pull failed",
                exc_info=exc if bug else None,
                extra=fields(module=spec.name, error=message),
            )
        else:
            self._pull_failures.pop(spec.image, None)
            log.info("image pulled", extra=fields(module=spec.name, image=spec.image))
        finally:
            self._pulls.pop(spec.image, None)
            self._state(spec.name).activity = None
            self._wake.set()

    def _container_body(self, spec: ModuleSpec) -> dict[str, Any]:
        body = copy.deepcopy(dict(spec.create_options))
        body["Image"] = spec.image
        env = [f"{k}={v}" for k, v in sorted(spec.env.items())]
        body["Env"] = [*(body.get("Env") or []), *env]
        body["Labels"] = {**(body.get("Labels") or {}), **spec.labels(self.owner)}
        host = body.setdefault("HostConfig", {})
        endpoints = (body.get("NetworkingConfig") or {}).get("EndpointsConfig")
        if self._network is not None and not host.get("NetworkMode") and not endpoints:
            host["NetworkMode"] = self._network
        return body

    async def _admit(self, spec: ModuleSpec) -> None:
        """`BadRequest` naming the field if admission refuses `spec` (see the module's doc)."""
        refusal = await self._blocking(self._admission.refusal, spec.create_options)
        if refusal is not None:
            field_name = refusal.field_under("settings.createOptions")
            raise BadRequest(
                f"module {spec.name!r}: field '{field_name}' {refusal.reason}", hint=refusal.hint
            )

    async def _after_remove(self, module: str) -> None:
        for hook in list(self._hooks):
            try:
                await hook.after_remove(module)
            except EdgekeeperError as exc:
                log.warning(
                    "module clean-up failed", extra=fields(module=module, error=exc.render())
                )
            except Exception as exc:
                log.error("module clean-up failed", exc_info=exc, extra=fields(module=module))

    async def _owned(self, name: str) -> list[ObservedContainer]:
        containers = await self.engine.list_containers({**self._owned_label, MODULE_LABEL: name})
        observed = [self._observe(c) for c in containers]
        observed.sort(key=lambda c: c.state != "running")
        return observed

    def _not_agent(self, name: str) -> None:
        if self.is_agent(name):
            raise Conflict(
                f"module {name!r} is the agent; it is defined by [agent] in config.toml",
                hint="edit [agent] and reload the daemon (SIGHUP)",
            )

    def _not_refused(self, name: str) -> None:
        refused = self._refused.get(name)
        if refused is not None and not self.is_agent(name):
            raise Conflict(
                f"module {name!r} is not run: {refused.reason}",
                hint=f"replace it (PUT /modules/{name}, or a deployment) or delete it",
            )

    def _check_readable(self) -> None:
        if self._unreadable is not None:
            raise StateError(self._unreadable.message, hint=self._unreadable.hint)

    async def _edit(self, change: Callable[[dict[str, ModuleSpec]], object], name: str) -> None:
        await self._loaded.wait()
        self._not_agent(name)
        async with self._lock:
            self._check_readable()
            specs = dict(self._specs)
            change(specs)
            kept = {other: r.document for other, r in self._refused.items() if other != name}
            await self._blocking(self._desired_store.save, specs, kept)
            self._specs = specs
            self._refused.pop(name, None)
            state = self._state(name)
            state.fresh_start()
            if name not in specs:
                state.cleanup_due = True
        self._wake.set()

    async def _blocking(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self._run_blocking is None:
            return fn(*args)
        return await self._run_blocking(fn, *args)

    def _state(self, name: str) -> ModuleState:
        return self._states.setdefault(name, ModuleState())

    def _status(self, spec: ModuleSpec, container: Mapping[str, Any] | None) -> ModuleStatus:
        refused = None if self.is_agent(spec.name) else self._refused.get(spec.name)
        if refused is not None:
            shown = module_status(
                spec, None, agent=False, note=refused.reason, backoff_left=0.0, restart_count=0
            )
            return replace(shown, runtime_status=RuntimeStatus.FAILED)
        state = self._states.get(spec.name) or ModuleState()
        status = module_status(
            spec,
            container,
            agent=self.is_agent(spec.name),
            note=state.note(),
            backoff_left=max(0.0, state.restarts.not_before - self._clock()),
            restart_count=state.restarts.failures,
        )
        failed = state.issue is not None and state.issue.failed
        if failed and status.runtime_status is not RuntimeStatus.RUNNING:
            return replace(status, runtime_status=RuntimeStatus.FAILED)
        return status

    async def _inspect(self, container: ContainerSummary | None) -> dict[str, Any] | None:
        if container is None:
            return None
        try:
            return await self.engine.inspect(container.container_id)
        except NotFound:
            return None

    async def _container_id(self, name: str) -> str | None:
        self.spec(name)
        containers = await self._owned(name)
        return containers[0].container_id if containers else None

    def _observe(self, container: ContainerSummary) -> ObservedContainer:
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


async def _closing(frames: AsyncIterator[LogFrame]) -> AsyncGenerator[LogFrame, None]:
    """`frames`, closed when this generator is (a client hanging up ends the engine's stream)."""
    try:
        async for frame in frames:
            yield frame
    finally:
        if isinstance(frames, AsyncGenerator):
            await frames.aclose()
