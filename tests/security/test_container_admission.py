"""Container admission against the running daemon and a real dockerd (docs/security.md: a hostile
deployment or agent asking for the host; a malformed spec stopping supervision).

With `allow_elevated_docker_permissions = false`, every kind of elevation is refused with a 400
naming the field and the setting, and no container is ever made; by default it is admitted (so
these tests can fail). Malformed createOptions are refused whatever the setting, and a bad spec
already in the state store is shown failed while the agent and the other modules run.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from firmware.errors import BadRequest
from firmware.runtime.desired import DOCUMENT
from firmware.runtime.spec import MODULE_LABEL
from firmware.store.state import StateStore
from tests.peers.gateway import REPO, Gateway
from tests.peers.program import daemon_argv, program_env
from tests.peers.waiting import wait_until

pytestmark = pytest.mark.docker

SETTING = "allow_elevated_docker_permissions = true"
SLEEP: dict[str, Any] = {"Cmd": ["sleep", "3600"], "StopTimeout": 1}
NO_NET: dict[str, Any] = {"NetworkMode": "none"}


STRICT = "allow_elevated_docker_permissions = false"


def with_host(**host_config: Any) -> dict[str, Any]:
    return {**SLEEP, "HostConfig": {**NO_NET, **host_config}}


def containers_of(gateway: Gateway, module: str) -> list[str]:
    """Every container (running or not) the engine has for `module`."""
    listing = gateway.dockerd.docker(
        "ps", "-a", "-q", "--no-trunc", "--filter", f"label={MODULE_LABEL}={module}"
    )
    return listing.stdout.split()


def module_names(gateway: Gateway) -> list[str]:
    return [m["name"] for m in gateway.request("GET", "/modules").json()["modules"]]


def runtime_status(gateway: Gateway, module: str) -> dict[str, Any]:
    return gateway.request("GET", f"/modules/{module}").json()["status"]["runtimeStatus"]


def test_every_kind_of_elevation_is_refused_and_no_container_is_made(gateway, client_image) -> None:
    running = gateway(top_toml=STRICT)
    engine_socket = str(running.dockerd.socket)
    attacks = [
        ("privileged", with_host(Privileged=True), "HostConfig.Privileged"),
        ("capadd", with_host(CapAdd=["SYS_ADMIN"]), "HostConfig.CapAdd[0]"),
        ("capall", with_host(CapAdd=["ALL"]), "HostConfig.CapAdd[0]"),
        ("hostroot", with_host(Binds=["/:/host"]), "HostConfig.Binds[0]"),
        ("hostetc", with_host(Binds=["//tmp/../etc/:/e:ro"]), "HostConfig.Binds[0]"),
        ("enginesock", with_host(Binds=[f"{engine_socket}:/var/run/docker.sock"]), "Binds[0]"),
        ("rundir", with_host(Binds=[f"{running.run_dir}:/r"]), "HostConfig.Binds[0]"),
        ("otherslot", with_host(Binds=[f"{running.run_dir}/mnt/{running.agent}:/a"]), "Binds[0]"),
        (
            "datadir",
            with_host(Mounts=[{"Type": "bind", "Source": f"{running.data_dir}/", "Target": "/d"}]),
            "HostConfig.Mounts[0].Source",
        ),
        ("hostpid", with_host(PidMode="host"), "HostConfig.PidMode"),
        (
            "devices",
            with_host(Devices=[{"PathOnHost": "/dev/mem", "PathInContainer": "/dev/mem"}]),
            "HostConfig.Devices",
        ),
        ("seccomp", with_host(SecurityOpt=["seccomp=unconfined"]), "HostConfig.SecurityOpt[0]"),
    ]
    for name, options, field in attacks:
        with pytest.raises(BadRequest) as refused:
            running.deploy(name, client_image, options)
        message = refused.value.message
        assert f"settings.createOptions.{field}" in message or field in message, message
        assert SETTING in message, message
        assert containers_of(running, name) == [], name

    manifest = {"modules": {"sneaky": {"settings": {"image": client_image}}}}
    settings = manifest["modules"]["sneaky"]["settings"]
    settings["createOptions"] = json.dumps(with_host(Privileged=True))
    with pytest.raises(BadRequest, match=r"HostConfig\.Privileged"):
        running.request("POST", "/deployments", manifest)

    assert module_names(running) == [running.agent]
    assert containers_of(running, "sneaky") == []
    # Host networking stays allowed, as IoT Edge allows it.
    running.deploy("hostnet", client_image, {**SLEEP, "HostConfig": {"NetworkMode": "host"}})
    running.container_of("hostnet")


def test_elevation_is_admitted_while_the_setting_is_true(gateway, client_image) -> None:
    """The container is made as asked (whether this test host lets runc start a privileged
    container is the engine's business, not admission's)."""
    running = gateway()
    running.deploy("privileged", client_image, with_host(Privileged=True, CapAdd=["SYS_ADMIN"]))
    (container,) = wait_until(
        lambda: containers_of(running, "privileged"), timeout_s=60, what="the container made"
    )
    inspected = json.loads(running.dockerd.docker("inspect", container).stdout)[0]
    assert inspected["HostConfig"]["Privileged"] is True
    assert inspected["HostConfig"]["CapAdd"] == ["SYS_ADMIN"]


def test_malformed_create_options_are_refused_and_supervision_goes_on(
    gateway, client_image
) -> None:
    running = gateway()
    for name, options, field in [
        ("labels", {**SLEEP, "Labels": []}, "settings.createOptions.Labels"),
        ("hostconfig", {**SLEEP, "HostConfig": "x"}, "settings.createOptions.HostConfig"),
        ("binds", with_host(Binds="/tmp:/t"), "settings.createOptions.HostConfig.Binds"),
        ("env", {**SLEEP, "Env": [1]}, "settings.createOptions.Env[0]"),
    ]:
        with pytest.raises(BadRequest, match=re.escape(f"field '{field}' must be")):
            running.deploy(name, client_image, options)
        assert containers_of(running, name) == []
    running.deploy("good", client_image)
    running.container_of("good")
    running.container_of(running.agent)


def test_a_bad_spec_in_the_state_store_is_shown_failed_and_the_rest_runs(
    gateway, client_image
) -> None:
    running = gateway()
    agent_container = running.container_of(running.agent)
    running.stop()

    def spec(name: str, options: object) -> dict[str, Any]:
        settings = {"image": client_image, "createOptions": options}
        return {"name": name, "imagePullPolicy": "never", "config": {"settings": settings}}

    planted = {
        "badlabels": spec("badlabels", {**SLEEP, "Labels": []}),
        "badhost": spec("badhost", {**SLEEP, "HostConfig": "x"}),
        "elevated": spec("elevated", with_host(Privileged=True)),
    }
    StateStore(running.data_dir / "state").put(DOCUMENT, {"modules": planted})
    running.config.write_text(f"{STRICT}\n{running.config.read_text()}")
    running.start()

    wait_until(
        lambda: runtime_status(running, "badhost")["status"] == "failed",
        timeout_s=30,
        what="the bad stored module shown failed",
    )
    assert running.container_of(running.agent) == agent_container  # adopted, never stopped
    for name, words in [
        ("badlabels", "'settings.createOptions.Labels' must be an object of strings"),
        ("badhost", "'settings.createOptions.HostConfig' must be an object"),
        ("elevated", "'settings.createOptions.HostConfig.Privileged'"),
    ]:
        shown = runtime_status(running, name)
        assert shown["status"] == "failed" and words in shown["description"], shown
        assert containers_of(running, name) == []
    listing = running.cli("list")
    assert listing.returncode == 0, listing.stderr
    assert [
        line for line in listing.stdout.splitlines() if "badlabels" in line and "failed" in line
    ]

    running.deploy("good", client_image)
    running.container_of("good")
    running.stop()
    running.start()  # and again after a restart
    running.container_of("good")
    assert runtime_status(running, "badhost")["status"] == "failed"


def test_an_elevated_agent_stops_the_daemon_at_start(gateway, tmp_path: Path) -> None:
    running = gateway(top_toml=STRICT, agent_options=with_host(Privileged=True), start=False)
    done = subprocess.run(
        [*daemon_argv(), "run", "--config", str(running.config)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env=program_env(),
    )
    assert done.returncode == 1
    assert "[agent.config] createOptions.HostConfig.Privileged" in done.stderr, done.stderr
    assert SETTING in done.stderr
