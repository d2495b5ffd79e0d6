"""A flashed gateway comes online: `edgekeeper run` against the DPS and hub peers (loopback HTTPS,
test CA) and the session's dockerd. Provisioning sources, module identities on the hub, module
SAS tokens verified by the hub with the key it holds, offline starts, reprovisioning."""

from __future__ import annotations

import base64
import json
import secrets
import time
from urllib.parse import quote

import pytest

from firmware.identity.model import AGENT_IDENTITY
from firmware.runtime.spec import MODULE_LABEL
from tests.peers.cloud import CloudPeers
from tests.peers.gateway import Gateway
from tests.peers.hub_peer import DeviceCredential
from tests.peers.sas_token import derive_device_key
from tests.peers.waiting import wait_until

REGISTRATION = "gw-provisioned"


def dps_toml(cloud: CloudPeers, key_b64: str, registration_id: str = REGISTRATION) -> str:
    return (
        f'[provisioning]\nsource = "dps"\nglobal_endpoint = "{cloud.dps_endpoint}"\n'
        f'id_scope = "{cloud.id_scope}"\n\n'
        f'[provisioning.attestation]\nmethod = "symmetric_key"\n'
        f'registration_id = "{registration_id}"\nsymmetric_key = {{ value = "{key_b64}" }}\n'
    )


def enrolled(cloud: CloudPeers) -> str:
    """A new symmetric key enrolled for REGISTRATION at DPS; the TOML that provisions with it."""
    key = new_key()
    cloud.dps.enroll_symmetric(REGISTRATION, key)
    return dps_toml(cloud, key)


def online_gateway(gateway, cloud: CloudPeers) -> tuple[Gateway, str]:
    """A gateway provisioned through DPS with a symmetric key, once online; its device id."""
    gw = gateway(enrolled(cloud), top_toml=trust(cloud))
    return gw, online(gw, cloud)


def trust(cloud: CloudPeers) -> str:
    return f'trust_bundle_cert = "file://{cloud.ca_pem_path}"\ncloud_retries = 0\n'


def new_key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


def status(gw: Gateway) -> dict:
    services = gw.request("GET", "/daemon/status").json()["services"]
    identity = next(s for s in services if s["name"] == "identity")
    return identity.get("detail", {}).get("provisioning", {})


def module_env(gw: Gateway, module: str) -> dict[str, str]:
    done = gw.module_exec(module, "env")
    return dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)


def module_token(gw: Gateway, module: str, hub: str, device: str) -> str:
    """A SAS token for `module` made as a module SDK makes it: the workload API signs, as the
    identity in IOTEDGE_MODULEID."""
    env = module_env(gw, module)
    module_id = env["IOTEDGE_MODULEID"]
    resource = quote(f"{hub}/devices/{device}/modules/{module_id}", safe="").lower()
    expiry = int(time.time()) + 600
    data = base64.b64encode(f"{resource}\n{expiry}".encode()).decode()
    genid = env["IOTEDGE_MODULEGENERATIONID"]
    code, answer = gw.workload(
        module,
        "POST",
        f"/modules/{quote(module_id, safe='')}/genid/{genid}/sign",
        {"keyId": "primary", "algo": "HMACSHA256", "data": data},
    )
    assert code == 200, answer
    signature = quote(answer["digest"], safe="")
    return f"SharedAccessSignature sr={resource}&sig={signature}&se={expiry}"


def online(gw: Gateway, cloud: CloudPeers, hub_index: int = 0) -> str:
    """Wait until the agent's identity is on the hub with keys and its container runs (so the
    identity is recorded here too); the device id."""
    hub = cloud.hubs[hub_index]

    def keyed() -> bool:
        device = hub.devices.get(REGISTRATION)
        module = hub.modules(REGISTRATION).get(AGENT_IDENTITY) if device else None
        return module is not None and module.primary_key is not None

    wait_until(keyed, timeout_s=60, what=f"agent identity on hub {hub.host}")
    gw.container_of(gw.agent)
    return REGISTRATION


def cloud_requests(cloud: CloudPeers) -> int:
    return len(cloud.dps.requests) + sum(len(hub.requests) for hub in cloud.hubs)


def test_dps_symmetric_key_brings_the_gateway_online(gateway, cloud_peers: CloudPeers) -> None:
    gw, device = online_gateway(gateway, cloud_peers)
    hub = cloud_peers.hubs[0]
    env = module_env(gw, gw.agent)
    assert env["IOTEDGE_IOTHUBHOSTNAME"] == hub.host
    assert env["IOTEDGE_DEVICEID"] == device
    assert env["EdgeDeviceHostName"] == "gw.local"  # the agent connects to the hub itself
    assert env["IOTEDGE_MODULEGENERATIONID"] == hub.modules(device)[AGENT_IDENTITY].generation_id
    token = module_token(gw, gw.agent, hub.host, device)
    assert hub.verify_module_token(device, AGENT_IDENTITY, token)
    assert not hub.verify_module_token(device, AGENT_IDENTITY, token.replace("se=", "se=1"))
    state = status(gw)
    assert (state["source"], state["state"], state["hub"]) == ("dps", "provisioned", hub.host)
    shown = gw.cli("system", "status").stdout
    assert f"provisioning: dps, provisioned\n  device: {device} on {hub.host}" in shown


def test_a_module_removed_loses_its_hub_identity(
    gateway, cloud_peers: CloudPeers, client_image
) -> None:
    gw, device = online_gateway(gateway, cloud_peers)
    hub = cloud_peers.hubs[0]
    gw.deploy("sensor", client_image)
    wait_until(lambda: "sensor" in hub.modules(device), timeout_s=60, what="sensor on the hub")
    gw.request("DELETE", "/modules/sensor")
    wait_until(lambda: "sensor" not in hub.modules(device), timeout_s=60, what="sensor gone")


def test_a_warm_start_asks_the_cloud_nothing(gateway, cloud_peers: CloudPeers) -> None:
    gw, _ = online_gateway(gateway, cloud_peers)
    gw.stop()
    before = cloud_requests(cloud_peers)
    gw.start()
    gw.container_of(gw.agent)
    wait_until(lambda: status(gw).get("state") == "from cache", timeout_s=30, what="cache")
    assert cloud_requests(cloud_peers) == before


def test_without_a_cache_and_no_cloud_it_waits_and_retries_without_crashing(
    gateway, cloud_peers: CloudPeers
) -> None:
    toml = enrolled(cloud_peers)
    cloud_peers.dps.fail_next(2, 503)
    gw = gateway(toml, top_toml=trust(cloud_peers))
    wait_until(
        lambda: status(gw).get("state") == "waiting for provisioning",
        timeout_s=30,
        what="waiting for provisioning",
    )
    state = status(gw)
    assert "503" in state["lastResult"] and state["nextRetryAt"] > time.time()
    assert gw.dockerd.docker("ps", "-q", "--filter", f"name={gw.agent}").stdout.strip() == ""
    assert gw.process is not None and gw.process.poll() is None
    gw.request("PUT", "/daemon/log-level", {"level": "info"})  # still answers
    online(gw, cloud_peers)  # the third try, after back-off


def test_with_a_cache_and_no_cloud_the_modules_run(gateway, cloud_peers: CloudPeers) -> None:
    gw, _ = online_gateway(gateway, cloud_peers)
    gw.stop()
    gw.dockerd.remove_containers(MODULE_LABEL)
    cloud_peers.stop()
    gw.start()
    gw.container_of(gw.agent)
    assert status(gw)["state"] == "from cache"


def test_a_refused_hub_call_reprovisions_once_onto_the_new_hub(
    gateway, cloud_peers: CloudPeers, client_image
) -> None:
    gw, device = online_gateway(gateway, cloud_peers)
    old, new = cloud_peers.hubs
    first_agent = gw.container_of(gw.agent)
    cloud_peers.dps.move_device(REGISTRATION, new)
    old.disable_device(device)
    gw.deploy("sensor", client_image)  # its identity is refused by the old hub
    online(gw, cloud_peers, hub_index=1)
    wait_until(lambda: "sensor" in new.modules(device), timeout_s=60, what="sensor on new hub")
    assert status(gw)["reprovisions"] == 1
    wait_until(
        lambda: gw.container_of(gw.agent) != first_agent, timeout_s=60, what="agent recreated"
    )
    assert module_env(gw, gw.agent)["IOTEDGE_IOTHUBHOSTNAME"] == new.host
    token = module_token(gw, gw.agent, new.host, device)
    assert new.verify_module_token(device, AGENT_IDENTITY, token)


def test_a_failed_reprovision_keeps_the_identity_in_force(gateway, cloud_peers: CloudPeers) -> None:
    gw, device = online_gateway(gateway, cloud_peers)
    agent = gw.container_of(gw.agent)
    cloud_peers.dps.fail_next(1000, 500)
    done = gw.cli("system", "reprovision")
    assert done.returncode == 1 and "500" in done.stderr
    state = status(gw)
    assert (state["hub"], state["deviceId"]) == (cloud_peers.hubs[0].host, device)
    assert gw.container_of(gw.agent) == agent


def test_manual_connection_string(gateway, cloud_peers: CloudPeers) -> None:
    hub = cloud_peers.hubs[1]
    key = new_key()
    hub.add_device(REGISTRATION, DeviceCredential(symmetric_key=key))
    connection = f"HostName={hub.host};DeviceId={REGISTRATION};SharedAccessKey={key}"
    gw = gateway(
        f'[provisioning]\nsource = "manual"\nconnection_string = "{connection}"\n',
        top_toml=trust(cloud_peers),
    )
    device = online(gw, cloud_peers, hub_index=1)
    token = module_token(gw, gw.agent, hub.host, device)
    assert hub.verify_module_token(device, AGENT_IDENTITY, token)
    assert cloud_peers.dps.requests == []


@pytest.mark.parametrize("mode", ["AlwaysOnStartup", "Dynamic"])
def test_always_on_startup_asks_dps_at_every_start(
    gateway, cloud_peers: CloudPeers, mode: str
) -> None:
    toml = enrolled(cloud_peers)
    top = trust(cloud_peers) + f'auto_reprovisioning_mode = "{mode}"\n'
    gw = gateway(toml, top_toml=top)
    online(gw, cloud_peers)
    gw.stop()
    before = len(cloud_peers.dps.requests)
    gw.start()
    gw.container_of(gw.agent)
    expected = "provisioned" if mode == "AlwaysOnStartup" else "from cache"
    wait_until(lambda: status(gw).get("state") == expected, timeout_s=30, what=expected)
    asked = len(cloud_peers.dps.requests) > before
    assert asked == (mode == "AlwaysOnStartup"), json.dumps(status(gw))


@pytest.mark.parametrize("where", ["value", "file", "key"])
def test_manual_sas_with_the_key_as_a_value_a_file_or_a_key_of_the_key_service(
    gateway, cloud_peers: CloudPeers, tmp_path, where: str
) -> None:
    hub = cloud_peers.hubs[0]
    raw = secrets.token_bytes(32)
    key = base64.b64encode(raw).decode()
    hub.add_device(REGISTRATION, DeviceCredential(symmetric_key=key))
    material = {
        "value": f'{{ value = "{key}" }}',
        "file": f'{{ uri = "file://{tmp_path / "device.key"}" }}',
        "key": '{ key = "device-sas" }',
    }[where]
    (tmp_path / "device.key").write_text(key + "\n")
    gw = gateway(
        f'[provisioning]\nsource = "manual"\niothub_hostname = "{hub.host}"\n'
        f'device_id = "{REGISTRATION}"\n\n'
        f'[provisioning.authentication]\nmethod = "sas"\ndevice_id_pk = {material}\n',
        top_toml=trust(cloud_peers),
        start=False,
    )
    if where == "key":  # put there before the first start, as a factory would
        keys = gw.data_dir / "keys"
        keys.mkdir(parents=True, mode=0o700)
        key_file = keys / "device-sas.key"
        key_file.write_bytes(b"hmac-sha256\n" + raw)
        key_file.chmod(0o600)
    gw.start()
    device = online(gw, cloud_peers)
    token = module_token(gw, gw.agent, hub.host, device)
    assert hub.verify_module_token(device, AGENT_IDENTITY, token)


def test_a_group_enrollment_with_the_derived_device_key_and_a_payload(
    gateway, cloud_peers: CloudPeers, tmp_path
) -> None:
    group_key = new_key()
    cloud_peers.dps.enroll_group("line-7", group_key)
    payload = tmp_path / "payload.json"
    payload.write_text('{"site": "plant-3", "line": 7}')
    toml = dps_toml(cloud_peers, derive_device_key(group_key, REGISTRATION)).replace(
        "[provisioning.attestation]",
        f'payload = {{ uri = "file://{payload}" }}\n\n[provisioning.attestation]',
    )
    gw = gateway(toml, top_toml=trust(cloud_peers))
    online(gw, cloud_peers)
    assert cloud_peers.dps.payloads[REGISTRATION] == {"site": "plant-3", "line": 7}
