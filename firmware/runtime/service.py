"""Daemon service "runtime": the container engine, the module reconciler and the image GC.

`prepare` builds everything from the config without touching the engine: `DockerEngine` on
`[runtime] uri`, the admission policy (`allow_elevated_docker_permissions`, with the engine's
socket and `[paths]` run_dir and data_dir protected), the agent's `ModuleSpec` from `[agent]`,
admitted by that policy (a refusal is a `ConfigError` naming `[agent.config] createOptions...`,
so the daemon does not start), `[watchdog] max_retries`, the reconciler (blocking store calls
through the daemon's executor) with the module hooks it was given. `run` runs the reconciler
and the image garbage collector until cancelled. A missing or dead engine never stops the daemon:
the reconciler retries with back-off, `describe()` shows the engine unavailable and the API
answers 503 with `RuntimeUnavailable`'s message.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence

from firmware.config.schema import Config
from firmware.errors import ConfigError, Unavailable
from firmware.executor import BoundedExecutor
from firmware.logs import fields, get_logger
from firmware.runtime.admission import AdmissionPolicy, host_policy
from firmware.runtime.desired import DesiredModules
from firmware.runtime.engine import DockerEngine
from firmware.runtime.hooks import ModuleHook
from firmware.runtime.images import ImageCollector, ImageSchedule
from firmware.runtime.reconciler import Reconciler
from firmware.runtime.spec import DesiredStatus, ModuleSpec, PullPolicy, RestartPolicy
from firmware.store.state import StateStore

log = get_logger("runtime")


class RuntimeService:
    """The reconciler and image GC under the daemon's supervisor."""

    name = "runtime"

    def __init__(
        self,
        config: Config,
        store: StateStore,
        executor: BoundedExecutor,
        hooks: Sequence[ModuleHook] = (),
        start_gate: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._config = config
        self._start_gate = start_gate
        self._store = store
        self._executor = executor
        self._hooks = tuple(hooks)
        self.reconciler: Reconciler | None = None
        self.images: ImageCollector | None = None

    async def prepare(self) -> None:
        config = self._config
        engine = DockerEngine(engine_socket(config.runtime.uri))
        self.images = ImageCollector(
            engine,
            self._store,
            in_use=self._images_in_use,
            schedule=ImageSchedule.from_config(config.image_garbage_collection),
            run_blocking=self._executor.run,
        )
        admission = admission_policy(config)
        agent = agent_spec(config)
        await self._admit_agent(admission, agent)
        auth = registry_auth(config)
        self.reconciler = Reconciler(
            engine,
            DesiredModules(self._store),
            agent=agent,
            agent_max_retries=max_retries(config.watchdog.max_retries),
            run_blocking=self._executor.run,
            hooks=(self.images, *self._hooks),
            pull_credentials={agent.name: auth} if auth else {},
            admission=admission,
            start_gate=self._start_gate,
            network=config.runtime.network,
        )

    async def _admit_agent(self, admission: AdmissionPolicy, agent: ModuleSpec) -> None:
        refusal = await self._executor.run(admission.refusal, agent.create_options)
        if refusal is not None:
            field_name = refusal.field_under("createOptions")
            raise ConfigError(f"[agent.config] {field_name} {refusal.reason}", hint=refusal.hint)

    async def run(self) -> None:
        if self.reconciler is None or self.images is None:
            await self.prepare()
        reconciler, images = self.reconciler, self.images
        assert reconciler is not None and images is not None
        log.info(
            "supervising modules",
            extra=fields(engine=engine_socket(self._config.runtime.uri), owner="edgekeeper"),
        )
        tasks = [asyncio.ensure_future(reconciler.run())]
        if self._config.image_garbage_collection.enabled:
            tasks.append(asyncio.ensure_future(images.run()))
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def current(self) -> Reconciler:
        """The reconciler (prepared at daemon start), or `Unavailable`."""
        if self.reconciler is None:
            raise Unavailable("the runtime service has not started", hint="see `edgekeeper status`")
        return self.reconciler

    def describe(self) -> dict[str, object]:
        reconciler = self.reconciler
        if reconciler is None:
            return {"engine": "not started"}
        return {
            "engine": "reachable" if reconciler.available else "unavailable",
            "socket": engine_socket(self._config.runtime.uri),
            "modules": len(reconciler.modules()),
            "degraded": reconciler.degraded,
            "waiting_for": reconciler.waiting,
        }

    def _images_in_use(self) -> set[str]:
        if self.reconciler is None:
            return set()
        return {spec.image for spec in self.reconciler.modules().values()}


def engine_socket(uri: str) -> str:
    """The engine's socket path from `[runtime] uri` (unix:// only)."""
    if not uri.startswith("unix://"):
        raise ConfigError(
            f"[runtime] uri {uri!r} is not a unix:// URI",
            hint="use unix:///var/run/docker.sock or the engine's socket path",
        )
    return uri[len("unix://") :]


def admission_policy(config: Config) -> AdmissionPolicy:
    """What modules may ask of the host, from `allow_elevated_docker_permissions`, `[runtime]`
    uri and `[paths]`."""
    return host_policy(
        allow_elevated=config.allow_elevated_docker_permissions,
        engine_socket=engine_socket(config.runtime.uri),
        daemon_dirs=(config.paths.run_dir, config.paths.data_dir),
    )


def max_retries(value: int | str) -> int | None:
    """`[watchdog] max_retries` as a number, or None for "infinite"."""
    return None if value == "infinite" else int(value)


def agent_spec(config: Config) -> ModuleSpec:
    """The agent module from `[agent]`: always wanted, always restarted."""
    agent = config.agent
    env = {
        key: value if isinstance(value, str) else json.dumps(value)
        for key, value in sorted(agent.env.items())
    }
    return ModuleSpec(
        name=agent.name,
        image=agent.config.image,
        env=env,
        create_options=dict(agent.config.create_options),
        restart_policy=RestartPolicy.ALWAYS,
        status=DesiredStatus.RUNNING,
        pull_policy=PullPolicy(agent.image_pull_policy),
    )


def registry_auth(config: Config) -> dict[str, str] | None:
    """The agent image's registry credentials from `[agent.config.auth]`, if any."""
    auth = config.agent.config.auth
    if auth is None:
        return None
    return {
        "serveraddress": auth.serveraddress,
        "username": auth.username,
        "password": auth.password,
    }
