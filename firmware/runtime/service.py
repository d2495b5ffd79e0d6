"""Daemon service "runtime": the container engine, the module reconciler and the image GC.

`prepare` builds everything from the config without touching the engine: `DockerEngine` on
`[runtime] uri`, the agent's `ModuleSpec` from `[agent]`, `[watchdog] max_retries`, the
reconciler (blocking store calls through the daemon's executor) and the management API routes.
`run` runs the reconciler and the image garbage collector until cancelled. A missing or dead
engine never stops the daemon: the reconciler retries with back-off, `describe()` shows the
engine unavailable and the API answers 503 with `RuntimeUnavailable`'s message.

Other services reach the reconciler through `runtime_service(ctx)`, and register module hooks
(`firmware.runtime.hooks.ModuleHook`) with `runtime_service(ctx).add_hook(hook)`; hooks outlive a
restart of this service.
"""

from __future__ import annotations

import asyncio
import json
import weakref
from typing import Any

from firmware.errors import ConfigError, Unavailable
from firmware.logs import fields, get_logger
from firmware.runtime.desired import DesiredModules
from firmware.runtime.engine import DockerEngine
from firmware.runtime.hooks import ModuleHook
from firmware.runtime.images import ImageCollector, ImageSchedule
from firmware.runtime.reconciler import Reconciler
from firmware.runtime.spec import DesiredStatus, ModuleSpec, PullPolicy, RestartPolicy

log = get_logger("runtime")

SERVICE_NAME = "runtime"

_HOOKS: weakref.WeakKeyDictionary[Any, list[ModuleHook]] = weakref.WeakKeyDictionary()


class RuntimeService:
    """The reconciler and image GC under the daemon's supervisor."""

    name = SERVICE_NAME

    def __init__(self) -> None:
        self.engine: DockerEngine | None = None
        self.reconciler: Reconciler | None = None
        self.images: ImageCollector | None = None
        self._hooks: list[ModuleHook] = []

    def add_hook(self, hook: ModuleHook) -> None:
        """Run `hook` before every container create and after every module removal."""
        if hook in self._hooks:
            return
        self._hooks.append(hook)
        if self.reconciler is not None:
            self.reconciler.add_hook(hook)

    async def prepare(self, ctx: Any) -> None:
        from firmware.api.management import register_routes

        config = ctx.config
        # Hooks outlive this instance: a reload makes a new RuntimeService, and the services
        # that registered hooks on the old one do not register them again.
        shared = _HOOKS.setdefault(ctx.services, [])
        shared.extend(hook for hook in self._hooks if hook not in shared)
        self._hooks = shared
        self.engine = DockerEngine(engine_socket(config.runtime.uri))
        self.images = ImageCollector(
            self.engine,
            ctx.store,
            in_use=self._images_in_use,
            schedule=ImageSchedule.from_config(config.image_garbage_collection),
            run_blocking=ctx.executor.run,
        )
        agent = agent_spec(config)
        auth = registry_auth(config)
        self.reconciler = Reconciler(
            self.engine,
            DesiredModules(ctx.store),
            agent=agent,
            agent_max_retries=max_retries(config.watchdog.max_retries),
            run_blocking=ctx.executor.run,
            hooks=(self.images, *self._hooks),
            pull_credentials={agent.name: auth} if auth else {},
        )
        register_routes(ctx.router, ctx)

    async def run(self, ctx: Any) -> None:
        if self.reconciler is None or self.images is None:
            await self.prepare(ctx)
        assert self.reconciler is not None and self.images is not None
        log.info(
            "supervising modules",
            extra=fields(engine=self.engine.socket_path if self.engine else "", owner="edgekeeper"),
        )
        tasks = [asyncio.ensure_future(self.reconciler.run(ctx))]
        if ctx.config.image_garbage_collection.enabled:
            tasks.append(asyncio.ensure_future(self.images.run()))
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

    def describe(self) -> dict[str, Any]:
        reconciler = self.reconciler
        if reconciler is None:
            return {"engine": "not started"}
        return {
            "engine": "reachable" if reconciler.available else "unavailable",
            "socket": reconciler.engine.socket_path,
            "modules": len(reconciler.modules()),
            "degraded": reconciler.degraded,
        }

    def _images_in_use(self) -> set[str]:
        if self.reconciler is None:
            return set()
        return {spec.image for spec in self.reconciler.modules().values()}


def runtime_service(ctx: Any) -> RuntimeService:
    """The daemon's runtime service; `Unavailable` if the daemon runs none."""
    service = ctx.services.get(SERVICE_NAME)
    if service is None:
        raise Unavailable(
            "the runtime service is not running", hint="set [runtime] uri in config.toml"
        )
    return service


def engine_socket(uri: str) -> str:
    if not uri.startswith("unix://"):
        raise ConfigError(
            f"[runtime] uri {uri!r} is not a unix:// URI",
            hint="use unix:///var/run/docker.sock or the engine's socket path",
        )
    return uri[len("unix://") :]


def max_retries(value: int | str) -> int | None:
    """`[watchdog] max_retries` as a number, or None for "infinite"."""
    return None if value == "infinite" else int(value)


def agent_spec(config: Any) -> ModuleSpec:
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


def registry_auth(config: Any) -> dict[str, str] | None:
    auth = config.agent.config.auth
    if auth is None:
        return None
    return {
        "serveraddress": auth.serveraddress,
        "username": auth.username,
        "password": auth.password,
    }
