"""edgeAgent's management-API calls replayed against `edgekeeper run` and the session's dockerd.

`tests/peers/edgeagent.py` sends each request as edgeAgent 1.5's client does (one connection,
`Connection: close`, its headers, its JSON) and judges each answer by that client's rules: the
success codes of the generated client for the api-version, the DTO properties it requires, the
dates and enums it parses, the Docker framing of logs. The sequences are edgeAgent's commands:
a new module is prepareupdate -> create -> start, an update is prepareupdate -> stop -> update ->
start, identities are list -> create -> update -> delete. Each runs at the newest (2022-08-03)
and oldest (2018-06-28) api-version edgeAgent has a client for, and at the first version of a
route where that differs (prepareupdate from 2019-01-30, resources from 2019-11-05).
"""

from __future__ import annotations

import base64
import datetime
import io
import json
import secrets
import time
import uuid
import zipfile
from typing import Any

import pytest

from tests.peers.cloud import CloudPeers
from tests.peers.edgeagent import (
    NEWEST,
    OLDEST,
    VERSIONS,
    EdgeAgent,
    LogLine,
    at_least,
    check_module_details,
    exit_code,
    module_env,
    module_spec,
    module_status,
    parse_time,
    reported_create_options,
)
from tests.peers.gateway import Gateway
from tests.peers.waiting import wait_until

pytestmark = pytest.mark.docker

TICKER = (
    'trap "exit 0" TERM; i=0; while true; do echo "tick $i"; echo "err $i" >&2; '
    "i=$((i+1)); sleep 1; done"
)


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:6]}"


def ticker_options(**extra: Any) -> dict[str, Any]:
    return {
        "Cmd": ["sh", "-c", TICKER],
        "StopTimeout": 5,
        "HostConfig": {"NetworkMode": "none"},
        **extra,
    }


def find(agent: EdgeAgent, name: str) -> dict[str, Any] | None:
    return next((m for m in agent.list_modules() if m["name"] == name), None)


def wait_status(agent: EdgeAgent, name: str, status: str, within: float = 60) -> dict[str, Any]:
    seen: list[Any] = [None]

    def reached() -> dict[str, Any] | None:
        module = find(agent, name)
        seen[0] = module and module["status"]
        return module if module is not None and module_status(module) == status else None

    try:
        return wait_until(reached, timeout_s=within, what=f"{name} {status}", interval_s=0.3)
    except AssertionError as timeout:
        raise AssertionError(f"{timeout}; its last status: {seen[0]}") from None


def started_at(module: dict[str, Any]) -> datetime.datetime:
    text = module["status"].get("startTime")
    assert text is not None, f"{module['name']} runs but has no startTime: {module['status']}"
    return parse_time(text, f"{module['name']}.status.startTime", "GEN Status.StartTime")


def recent(moment: datetime.datetime, what: str) -> None:
    now = datetime.datetime.now(datetime.UTC)
    assert now - datetime.timedelta(minutes=10) < moment <= now + datetime.timedelta(seconds=5), (
        f"{what} {moment.isoformat()} is not the last minutes (now {now.isoformat()}): edgeAgent "
        "reports it to the hub as is (MM GetModuleRuntimeInfo)"
    )


def container_env(gw: Gateway, module: str) -> dict[str, str]:
    done = gw.module_exec(module, "env")
    return dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)


def edgeagent_options(gw: Gateway, name: str, options: dict[str, Any]) -> dict[str, Any]:
    """`options` as edgeAgent sends them (Edgelet.Docker/CombinedEdgeletConfigProvider.cs): a bind
    of `{IOTEDGE_WORKLOADLISTEN_MNTURI}/{name}.sock` (else the workload socket itself) onto the
    IOTEDGE_WORKLOADURI path, and `NetworkingConfig.EndpointsConfig.{NetworkId}` when the agent has
    a NetworkId (then the module joins that network instead of none)."""
    agent = container_env(gw, gw.agent)
    connect = agent["IOTEDGE_WORKLOADURI"].removeprefix("unix://")
    listen_dir = agent.get("IOTEDGE_WORKLOADLISTEN_MNTURI", "").removeprefix("unix://")
    listen = f"{listen_dir}/{name}.sock" if listen_dir else connect
    shaped = json.loads(json.dumps(options))
    host = shaped.setdefault("HostConfig", {})
    host["Binds"] = [*host.get("Binds", []), f"{listen}:{connect}"]
    network = agent.get("NetworkId", "")
    if network:
        host.pop("NetworkMode", None)
        shaped["NetworkingConfig"] = {"EndpointsConfig": {network: {}}}
    return shaped


def edge_env(name: str, version: str, gw: Gateway) -> dict[str, str]:
    """Module env as edgeAgent builds it, plus one variable of the deployment's own."""
    return {
        "STAGE": "1",
        **module_env(
            name, version, hub="hub.invalid", device="gw", generation_id="1", gateway="gw.local"
        ),
    }


# ---------------------------------------------------------------------------------------------
# modules: deploy, list, update, restart, stop, logs, remove


@pytest.mark.parametrize("version", [NEWEST, "2019-01-30", OLDEST])
def test_module_lifecycle_as_edgeagent_runs_it(gateway, client_image, version) -> None:
    gw = gateway()
    agent = EdgeAgent(gw.management_socket, version)
    name = unique("eaSensor")
    options = edgeagent_options(gw, name, ticker_options())
    spec = module_spec(name, client_image, options, version, env=edge_env(name, version, gw))
    if not at_least(version, "2019-01-30"):
        # GEN(2018-06-28) has no imagePullPolicy: the server's default (on-create) applies.
        assert "imagePullPolicy" not in spec
    else:
        assert spec["imagePullPolicy"] == "Never"

    # StandardCommandFactory.CreateAsync: prepareupdate + create, then the planner's start
    agent.deploy(spec)
    running = wait_status(agent, name, "running")
    assert running["type"] == "docker"
    recent(started_at(running), "startTime")
    settings = running["config"]["settings"]
    assert settings["image"] == client_image
    assert json.loads(reported_create_options(settings))["Cmd"] == ["sh", "-c", TICKER]
    assert container_env(gw, name)["STAGE"] == "1"
    # with edgeAgent's own bind in its createOptions the module still reaches its workload socket
    code, bundle = gw.workload(name, "GET", "/trust-bundle")
    assert code == 200 and "BEGIN CERTIFICATE" in bundle["certificate"], (code, bundle)

    # StandardCommandFactory.UpdateAsync: prepareupdate + (stop + update), then start
    first_start = started_at(running)
    updated = module_spec(
        name,
        client_image,
        options,
        version,
        env={**edge_env(name, version, gw), "STAGE": "2"},
    )
    agent.update(updated)
    wait_until(
        lambda: container_env(gw, name).get("STAGE") == "2",
        timeout_s=60,
        what=f"{name} running with the updated env",
        interval_s=0.5,
    )
    after_update = wait_status(agent, name, "running")
    assert started_at(after_update) > first_start

    # RestartCommand
    before_restart = started_at(after_update)
    agent.restart(name)
    wait_until(
        lambda: (
            (m := find(agent, name)) is not None
            and module_status(m) == "running"
            and started_at(m) > before_restart
        ),
        timeout_s=60,
        what=f"{name} restarted",
        interval_s=0.3,
    )

    # logs as edgeAgent's GetLogs asks for them (JSON content type forces timestamps=true)
    wait_until(
        lambda: len(agent.logs(name, tail=4, timestamps=True)) >= 4,
        timeout_s=30,
        what=f"4 log lines of {name}",
        interval_s=0.5,
    )
    lines = agent.logs(name, tail=4, timestamps=True)
    assert len(lines) == 4, lines
    assert {line.stream for line in lines} == {"stdout", "stderr"}, lines
    for line in lines:
        assert line.timestamp is not None, (
            f"{line!r}: no Docker timestamp (RFC 3339, 9 fraction digits, Z) at the start of the "
            "payload (LOGS/LogMessageParser.cs dockerTimestamp)"
        )
        recent(line.timestamp, "log timestamp")
        assert line.text.startswith("tick " if line.stream == "stdout" else "err "), line
    since = str(int(time.time()) - 600)
    until = str(int(time.time()) + 60)
    bounded = agent.logs(name, tail=2, since=since, until=until, timestamps=False)
    # VER: with tail, since and until all set, tail is not sent: every line of the window comes
    assert len(bounded) > 2, bounded
    assert all(line.timestamp is None for line in bounded), bounded[:3]
    assert any(line.text.startswith("tick ") for line in bounded)
    assert agent.logs(name, since="10m", tail=1) != []
    # LogsStreamRequestHandler: follow=true, frames as they come
    followed = agent.follow_logs(name, 3)
    assert all(line.text.startswith(("tick ", "err ")) for line in followed), followed

    # StopCommand, then StartCommand
    agent.stop(name)
    stopped = wait_status(agent, name, "stopped")
    if stopped["status"].get("exitStatus") is not None:
        assert exit_code(stopped) == 0, stopped["status"]
    agent.start(name)
    wait_status(agent, name, "running")

    # RemoveCommand
    agent.remove(name)
    wait_until(
        lambda: find(agent, name) is None, timeout_s=60, what=f"{name} removed", interval_s=0.3
    )


def test_edgeagent_updates_itself_with_start_true(gateway, client_image) -> None:
    """UpdateEdgeAgentAsync: prepareupdate, then PUT /modules/{agent}?start=true (no stop)."""
    gw = gateway()
    agent = EdgeAgent(gw.management_socket, NEWEST)
    current = find(agent, gw.agent)
    assert current is not None, f"the agent {gw.agent} is not listed"
    options = json.loads(reported_create_options(current["config"]["settings"]))
    options["Labels"] = {"replay": "self-update"}
    spec = module_spec(gw.agent, client_image, options, NEWEST, env={"STAGE": "self"})
    agent.prepare_update(spec)
    agent.update_module(spec, start=True)
    wait_until(
        lambda: container_env(gw, gw.agent).get("STAGE") == "self",
        timeout_s=60,
        what="the agent recreated with the new env",
        interval_s=0.5,
    )
    assert module_status(wait_status(agent, gw.agent, "running")) == "running"


def test_prepare_update_of_an_unpullable_image_fails_before_create(gateway) -> None:
    """ExecutionPrerequisiteCommand: a failing prepareupdate stops the group. With "On-Create"
    edgelet pulls in prepareupdate (edgelet-http-mgmt/src/module/mod.rs pull_image) and a failed
    pull is an error; edgeAgent needs a 4xx/5xx with an ErrorResponse (`{"message"}`, GEN), and
    no module may appear."""
    gw = gateway()
    agent = EdgeAgent(gw.management_socket, NEWEST)
    name = unique("eaMissing")
    spec = module_spec(
        name, "registry.invalid/none/such:1", ticker_options(), NEWEST, pull_policy="On-Create"
    )
    answer = agent.send("prepare_update", name, {**spec, "config": {**spec["config"], "env": []}})
    assert answer.status >= 400, (answer.status, answer.text())
    assert isinstance(json.loads(answer.body).get("message"), str), answer.text()
    assert find(agent, name) is None


# ---------------------------------------------------------------------------------------------
# GET /modules field shapes in every state


def test_module_list_fields_in_every_state(gateway, client_image) -> None:
    gw = gateway()
    agent = EdgeAgent(gw.management_socket, NEWEST)
    names = {state: unique(f"ea{state}") for state in ("running", "failed", "stopped", "backoff")}
    as_string = unique("eastring")

    def create(name: str, options: Any, **extra: Any) -> None:
        """Create, then start as edgeAgent's planner does (edgelet's create does not start)."""
        body = module_spec(name, client_image, {}, NEWEST)
        body["config"]["settings"]["createOptions"] = options
        answer = agent.send("create_module", body={**body, **extra})
        assert answer.status == 201, (name, answer.status, answer.text())
        agent.start(name)

    create(names["running"], ticker_options())
    # restartPolicy is edgekeeper's (edgelet never restarts, edgeAgent does): "never" for a module
    # that exits and stays so, "always" for one in back-off
    create(names["failed"], ticker_options(Cmd=["sh", "-c", "exit 3"]), restartPolicy="never")
    create(names["stopped"], ticker_options())
    create(names["backoff"], ticker_options(Cmd=["sh", "-c", "exit 1"]), restartPolicy="always")
    create(as_string, json.dumps(ticker_options()))

    wait_status(agent, names["stopped"], "running")
    agent.stop(names["stopped"])
    for state, name in names.items():
        wait_status(agent, name, state, within=90)
    wait_status(agent, as_string, "running")
    # a module whose container cannot be made (image absent, pull policy Never): the list, which
    # edgeAgent deserialises whole, must stay valid (ModuleDetails.id is Required.Always)
    absent = unique("eaabsent")
    answer = agent.send(
        "create_module",
        body=module_spec(absent, "registry.invalid/none/such:1", ticker_options(), NEWEST),
    )
    assert answer.status == 201, (answer.status, answer.text())
    time.sleep(2)
    assert module_status(find(agent, absent) or {}) in ("unknown", "failed", "backoff", "stopped")

    for version in (NEWEST, OLDEST):
        listed = {m["name"]: m for m in EdgeAgent(gw.management_socket, version).list_modules()}
        for state, name in names.items():
            module = listed[name]
            check_module_details(module, version, f"modules[{name}]")
            assert module["type"] == "docker"
            assert module_status(module) == state, module["status"]
            if state in ("running", "stopped", "failed"):
                recent(started_at(module), f"{state} module's startTime")
            if state in ("failed", "backoff"):
                exit_status = module["status"].get("exitStatus")
                assert exit_status is not None, (
                    f"{state} module without exitStatus: {module['status']}"
                )
                exited = parse_time(exit_status["exitTime"], "exitTime", "GEN ExitStatus.ExitTime")
                recent(exited, f"{state} module's exitTime")
                assert exit_code(module) == (3 if state == "failed" else 1), exit_status
                assert isinstance(exit_status["statusCode"], str), exit_status

    listed = {m["name"]: m for m in agent.list_modules()}
    for name, options in ((names["running"], ticker_options()), (as_string, ticker_options())):
        settings = listed[name]["config"]["settings"]
        assert isinstance(settings, dict), settings
        assert settings["image"] == client_image
        assert json.loads(reported_create_options(settings))["Cmd"] == options["Cmd"], settings


# ---------------------------------------------------------------------------------------------
# identities (need the hub: a provisioned gateway)


AGENT_IDENTITY = "$edgeAgent"  # edge-agent Core Constants.EdgeAgentModuleIdentityName
HUB_IDENTITY = "$edgeHub"  # edge-agent Core Constants.EdgeHubModuleIdentityName


def dps_toml(cloud: CloudPeers, registration: str) -> str:
    key = base64.b64encode(secrets.token_bytes(32)).decode()
    cloud.dps.enroll_symmetric(registration, key)
    return (
        f'[provisioning]\nsource = "dps"\nglobal_endpoint = "{cloud.dps_endpoint}"\n'
        f'id_scope = "{cloud.id_scope}"\n\n'
        f'[provisioning.attestation]\nmethod = "symmetric_key"\n'
        f'registration_id = "{registration}"\nsymmetric_key = {{ value = "{key}" }}\n'
    )


def online_gateway(gateway, cloud: CloudPeers) -> Gateway:
    registration = unique("ea-replay-")
    gw = gateway(
        dps_toml(cloud, registration),
        top_toml=f'trust_bundle_cert = "file://{cloud.ca_pem_path}"\ncloud_retries = 0\n',
    )
    hub = cloud.hubs[0]

    def agent_on_hub() -> bool:
        modules = hub.modules(registration) if registration in hub.devices else {}
        module = modules.get(AGENT_IDENTITY) or modules.get(gw.agent)
        return module is not None and module.primary_key is not None

    wait_until(agent_on_hub, timeout_s=60, what="the agent's identity on the hub")
    gw.container_of(gw.agent)
    return gw


@pytest.mark.parametrize("version", [NEWEST, OLDEST])
def test_identity_sequence_as_edgeagent_runs_it(gateway, cloud_peers, version) -> None:
    gw = online_gateway(gateway, cloud_peers)
    agent = EdgeAgent(gw.management_socket, version)
    listed = {i["moduleId"]: i for i in agent.identities()}
    # ModuleIdentityLifecycleManager: the agent's own identity is "$edgeAgent" (never updated)
    assert AGENT_IDENTITY in listed, listed

    name = unique("eaIdentity")
    created = agent.create_identity(name)
    assert created["moduleId"] == name
    assert created["managedBy"] == "IotEdge", created
    assert {i["moduleId"] for i in agent.identities()} >= {AGENT_IDENTITY, name}

    updated = agent.update_identity(name, created["generationId"], created["managedBy"])
    assert updated["moduleId"] == name
    assert updated["generationId"] == created["generationId"]

    agent.delete_identity(name)
    assert name not in {i["moduleId"] for i in agent.identities()}

    # edgeHub's identity, "$edgeHub" ("%24edgeHub" in the path): created if absent, else updated
    hub = {i["moduleId"]: i for i in agent.identities()}.get(HUB_IDENTITY)
    if hub is None:
        hub = agent.create_identity(HUB_IDENTITY)
    again = agent.update_identity(HUB_IDENTITY, hub["generationId"], hub["managedBy"])
    assert again["moduleId"] == HUB_IDENTITY
    assert HUB_IDENTITY in {i["moduleId"] for i in agent.identities()}


def test_agent_environment_has_what_edgeagent_reads_at_start(gateway, cloud_peers) -> None:
    """edge-agent Service/Program.cs + Core Constants.cs: what must be set for Mode=iotedged."""
    gw = online_gateway(gateway, cloud_peers)
    env = container_env(gw, gw.agent)
    assert env.get("Mode", "iotedged").lower() == "iotedged", env
    for name in (
        "IOTEDGE_MANAGEMENTURI",
        "IOTEDGE_WORKLOADURI",
        "IOTEDGE_APIVERSION",
        "IOTEDGE_IOTHUBHOSTNAME",
        "IOTEDGE_DEVICEID",
        "IOTEDGE_MODULEID",
        "IOTEDGE_MODULEGENERATIONID",
        "IOTEDGE_AUTHSCHEME",
        "EdgeDeviceHostName",  # EdgeletCommandFactory throws when it is empty
    ):
        assert env.get(name, "").strip(), f"{name} missing from the agent's env: {sorted(env)}"
    assert env["IOTEDGE_MANAGEMENTURI"].startswith("unix:///"), env["IOTEDGE_MANAGEMENTURI"]
    assert env["IOTEDGE_WORKLOADURI"].startswith("unix:///"), env["IOTEDGE_WORKLOADURI"]
    # ApiVersion.ParseVersion: an unknown name makes edgeAgent use its own newest (2022-08-03)
    assert env["IOTEDGE_APIVERSION"] in VERSIONS, (
        f"IOTEDGE_APIVERSION={env['IOTEDGE_APIVERSION']!r} is not one of edgeAgent's {VERSIONS}; "
        "aziot-edged 1.5 sets 2022-08-03 (edgelet/aziot-edged/src/watchdog.rs)"
    )
    mgmt = env["IOTEDGE_MANAGEMENTURI"].removeprefix("unix://")
    done = gw.module_exec(gw.agent, "uds_http", mgmt, "GET", f"/systeminfo?api-version={NEWEST}")
    assert done.stdout.startswith("200"), (done.stdout, done.stderr)


# ---------------------------------------------------------------------------------------------
# systeminfo and systeminfo/resources


@pytest.mark.parametrize("version", [NEWEST, "2019-11-05", OLDEST])
def test_system_info_and_resources(gateway, client_image, version) -> None:
    gw = gateway()
    agent = EdgeAgent(gw.management_socket, version)
    info = agent.system_info()
    assert info["osType"] == "linux", info
    if at_least(version, "2020-07-07"):
        assert isinstance(info.get("provisioning"), dict), info
    if not at_least(version, "2019-11-05"):
        return  # MM(<2019-11-05).GetSystemResourcesAsync makes no request
    name = unique("eaStats")
    agent.deploy(module_spec(name, client_image, ticker_options(), version))
    wait_status(agent, name, "running")
    resources = agent.system_resources()
    assert resources["total_ram"] > 0 and resources["disks"], resources
    stats = json.loads(resources["docker_stats"])
    assert f"/{name}" in {entry.get("name") for entry in stats}, (
        f"no docker_stats entry named /{name}: edgeAgent takes module names from the Docker stats "
        "'name' ('/<module>'), Edgelet.Docker/SystemResourcesMetrics.cs"
    )


def test_support_bundle_is_a_zip(gateway, client_image) -> None:
    """edgeAgent uploads whatever GET /systeminfo/supportbundle answers as the bundle (the status is
    not checked: GEN GetSupportBundleAsync, Core requests/SupportBundleRequestHandler.cs), so the
    answer must be a zip archive (edgelet: 200, application/zip, edgelet-http-mgmt
    src/system_info/support_bundle.rs)."""
    gw = gateway()
    agent = EdgeAgent(gw.management_socket, NEWEST, timeout_s=120)
    answer = agent.support_bundle(
        since="10m", until="0m", iothub_hostname="hub.invalid", edge_runtime_only=False
    )
    assert answer.status == 200, (answer.status, answer.text()[:300])
    assert answer.body[:4] == b"PK\x03\x04", answer.body[:200]
    with zipfile.ZipFile(io.BytesIO(answer.body)) as bundle:
        assert bundle.testzip() is None
        assert bundle.namelist(), "an empty bundle"


@pytest.mark.parametrize("version", [NEWEST, "2019-10-22"])
def test_reprovision_as_edgeagent_asks(gateway, cloud_peers, version) -> None:
    """POST /device/reprovision (empty JSON content): edgeAgent expects 200 at every version; an
    empty 204 fails it before 2021-12-07 (GEN ReprovisionDeviceAsync)."""
    gw = online_gateway(gateway, cloud_peers)
    EdgeAgent(gw.management_socket, version).call("reprovision")
    gw.container_of(gw.agent)


def test_log_lines_parse_like_edgeagent() -> None:
    """The replay's own parser: a Docker-framed timestamped payload and an unframed body."""
    from tests.peers.edgeagent import docker_frames, parse_log_payload

    payload = b"2024-05-01T10:00:00.123456789Z <4> hello\n"
    frame = bytes([2, 0, 0, 0]) + len(payload).to_bytes(4, "big") + payload
    ((stream, data),) = docker_frames(frame)
    line = parse_log_payload(stream, data)
    assert line == LogLine(
        "stderr", 4, datetime.datetime(2024, 5, 1, 10, 0, 0, 123456, datetime.UTC), "hello"
    )
    with pytest.raises(AssertionError, match="Docker frame"):
        docker_frames(b"hello world, no framing here\n")
