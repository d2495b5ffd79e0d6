"""The runtime service from a config: agent spec, watchdog, the hooks the wiring gives it."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from firmware.config import load_config
from firmware.errors import ConfigError, Unavailable
from firmware.executor import BoundedExecutor
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


def runtime_config(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text(CONFIG.format(root=tmp_path))
    path.chmod(0o600)  # it holds a registry password
    return load_config(path)


def store(tmp_path):
    state = StateStore(tmp_path / "state")
    state.ensure()
    return state


class Hook:
    async def before_create(self, spec, body):
        return None

    async def after_remove(self, module_name):
        return None


def test_agent_spec_and_watchdog_from_config(tmp_path):
    config = runtime_config(tmp_path)
    agent = agent_spec(config)
    assert agent.name == "edgeAgent" and agent.image == "example/agent:1.5"
    assert agent.env == {"Port": "8080", "UpstreamProtocol": "AmqpWs"}
    assert agent.create_options == {"HostConfig": {"Privileged": False}}
    assert agent.pull_policy is PullPolicy.NEVER
    assert agent.restart_policy is RestartPolicy.ALWAYS
    assert max_retries(config.watchdog.max_retries) == 3
    assert max_retries("infinite") is None


def test_prepare_touches_no_engine_and_runs_the_hooks_it_was_given(tmp_path):
    executor = BoundedExecutor()
    hook = Hook()
    service = RuntimeService(runtime_config(tmp_path), store(tmp_path), executor, hooks=(hook,))
    try:
        asyncio.run(service.prepare())
    finally:
        executor.shutdown()
    assert service.describe() == {
        "engine": "unavailable",
        "socket": f"{tmp_path}/docker.sock",
        "modules": 1,
        "degraded": None,
        "waiting_for": None,
    }
    hooks = service.current()._hooks
    assert isinstance(hooks[0], ImageCollector) and hooks[1:] == [hook]
    assert service.current()._pull_credentials["edgeAgent"]["serveraddress"] == (
        "example.azurecr.io"
    )


def test_current_is_unavailable_before_prepare(tmp_path):
    executor = BoundedExecutor()
    service = RuntimeService(runtime_config(tmp_path), store(tmp_path), executor)
    with pytest.raises(Unavailable):
        service.current()
    assert service.describe() == {"engine": "not started"}


def prepared(config, tmp_path):
    executor = BoundedExecutor()
    service = RuntimeService(config, store(tmp_path), executor)
    try:
        asyncio.run(service.prepare())
    finally:
        executor.shutdown()
    return service


def agent_config(tmp_path, options, *, allow_elevated):
    """The config above with the agent's createOptions replaced (ROOT stands for tmp_path)."""
    text = CONFIG.format(root=tmp_path).replace(
        "{ HostConfig = { Privileged = false } }", options.replace("ROOT", str(tmp_path))
    )
    path = tmp_path / "config.toml"
    path.write_text(f"allow_elevated_docker_permissions = {str(allow_elevated).lower()}\n{text}")
    path.chmod(0o600)
    return load_config(path)


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ("{ HostConfig = { Privileged = true } }", "createOptions.HostConfig.Privileged"),
        ('{ HostConfig = { Binds = ["ROOT/run/x:/x"] } }', "createOptions.HostConfig.Binds[0]"),
        ('{ HostConfig = { CapAdd = ["SYS_ADMIN"] } }', "createOptions.HostConfig.CapAdd[0]"),
    ],
)
def test_an_elevated_agent_stops_the_start_while_elevation_is_not_allowed(tmp_path, options, field):
    with pytest.raises(ConfigError) as refused:
        prepared(agent_config(tmp_path, options, allow_elevated=False), tmp_path)
    assert refused.value.render().startswith(f"[agent.config] {field} ")
    assert "allow_elevated_docker_permissions = true" in refused.value.render()
    allowed = prepared(agent_config(tmp_path, options, allow_elevated=True), tmp_path)
    assert allowed.current().spec("edgeAgent").create_options != {}


def test_an_agent_with_malformed_create_options_stops_the_start(tmp_path):
    config = runtime_config(tmp_path)
    bad = dataclasses.replace(
        config,
        agent=dataclasses.replace(
            config.agent,
            config=dataclasses.replace(config.agent.config, create_options={"Labels": ["x"]}),
        ),
    )
    with pytest.raises(ConfigError, match=r"\[agent.config\] createOptions.Labels must be"):
        prepared(bad, tmp_path)
