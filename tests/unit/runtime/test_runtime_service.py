"""The runtime service from a config: agent spec, watchdog, hooks that outlive a reload."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from firmware.api.router import Router
from firmware.config import load_config
from firmware.daemon.service import ServiceDirectory
from firmware.runtime.images import ImageCollector
from firmware.runtime.service import RuntimeService, agent_spec, max_retries
from firmware.runtime.spec import PullPolicy, RestartPolicy
from firmware.store.state import StateStore

CONFIG = """
[paths]
data_dir = "{root}/data"
run_dir = "{root}/run"

[runtime]
uri = "unix://{root}/docker.sock"

[agent]
name = "edgeAgent"
imagePullPolicy = "never"

[agent.config]
image = "example/agent:1.5"
createOptions = {{ HostConfig = {{ Privileged = false }} }}

[agent.config.auth]
serveraddress = "example.azurecr.io"
username = "u"
password = "p"

[agent.env]
UpstreamProtocol = "AmqpWs"
Port = 8080

[watchdog]
max_retries = 3
"""


class Executor:
    async def run(self, fn, *args):
        return fn(*args)


def context(tmp_path, services):
    path = tmp_path / "config.toml"
    path.write_text(CONFIG.format(root=tmp_path))
    store = StateStore(tmp_path / "state")
    store.ensure()
    return SimpleNamespace(
        config=load_config(path),
        store=store,
        router=Router(),
        executor=Executor(),
        services=services,
        logs=None,
        started_at=0.0,
    )


class Hook:
    async def before_create(self, spec, body):
        return None

    async def after_remove(self, module_name):
        return None


def test_agent_spec_and_watchdog_from_config(tmp_path):
    ctx = context(tmp_path, ServiceDirectory())
    agent = agent_spec(ctx.config)
    assert agent.name == "edgeAgent" and agent.image == "example/agent:1.5"
    assert agent.env == {"Port": "8080", "UpstreamProtocol": "AmqpWs"}
    assert agent.create_options == {"HostConfig": {"Privileged": False}}
    assert agent.pull_policy is PullPolicy.NEVER
    assert agent.restart_policy is RestartPolicy.ALWAYS
    assert max_retries(ctx.config.watchdog.max_retries) == 3
    assert max_retries("infinite") is None


def test_prepare_touches_no_engine_and_hooks_outlive_a_new_instance(tmp_path):
    services = ServiceDirectory()
    ctx = context(tmp_path, services)
    first = RuntimeService()
    services.add(first)
    hook = Hook()
    first.add_hook(hook)
    asyncio.run(first.prepare(ctx))
    assert first.describe() == {
        "engine": "unavailable",
        "socket": f"{tmp_path}/docker.sock",
        "modules": 1,
        "degraded": None,
    }
    hooks = first.reconciler._hooks
    assert isinstance(hooks[0], ImageCollector) and hooks[1] is hook
    assert first.reconciler._pull_credentials["edgeAgent"]["serveraddress"] == (
        "example.azurecr.io"
    )
    patterns = {route.pattern for route in ctx.router.routes()}
    assert {"/modules", "/modules/{name}/logs", "/deployments", "/systeminfo"} <= patterns

    second = RuntimeService()  # what a reload makes
    services.add(second)
    asyncio.run(second.prepare(ctx))
    assert second.reconciler._hooks[1:] == [hook]
    second.add_hook(hook)
    assert second.reconciler._hooks[1:] == [hook]
