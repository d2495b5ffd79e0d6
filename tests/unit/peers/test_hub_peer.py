"""The IoT Hub peer answers the module identity REST API for a device that proves itself (SAS or
X.509), checks module tokens on the module twin, keeps its registry in a state file, and the
cloud program writes peers.json and stops on SIGTERM."""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.peers.cloud import CloudPeers
from tests.peers.cloud_ca import CertificateAuthority, self_signed, thumbprint_sha1
from tests.peers.hub_peer import SYSTEM_MODULES, DeviceCredential, HubPeer
from tests.peers.program import REPO, program_env
from tests.peers.waiting import wait_until
from tests.unit.peers.cloud_requests import Reply, sas_token, send

API = "api-version=2017-11-08-preview"
DEVICE_KEY = base64.b64encode(bytes(range(32))).decode()
MODULE_KEY = base64.b64encode(b"k" * 32).decode()
SECOND_KEY = base64.b64encode(b"s" * 32).decode()


def device_token(hub: HubPeer, device_id: str, key: str = DEVICE_KEY) -> str:
    return sas_token(f"{hub.host}/devices/{device_id}", key)


def module_token(hub: HubPeer, device_id: str, module_id: str, key: str) -> str:
    return sas_token(f"{hub.host}/devices/{device_id}/modules/{module_id}", key)


def call(
    cloud: CloudPeers,
    method: str,
    path: str,
    *,
    token: str | None = None,
    body: object = None,
    if_match: str | None = None,
    cert: tuple[Path, Path] | None = None,
    api: str = API,
) -> Reply:
    headers = {"Authorization": token} if token else {}
    if if_match is not None:
        headers["If-Match"] = if_match
    hub = cloud.hubs[0]
    target = f"{path}?{api}"
    return send(
        hub.port, cloud.ca_pem_path, method, target, body=body, headers=headers, client_cert=cert
    )


def identity(
    module_id: str, primary: str | None = None, secondary: str | None = None
) -> dict[str, object]:
    body: dict[str, object] = {"moduleId": module_id, "deviceId": "dev-1"}
    if primary or secondary:
        body["authentication"] = {
            "symmetricKey": {"primaryKey": primary, "secondaryKey": secondary},
            "type": "sas",
        }
    return body


@pytest.fixture
def hub(cloud_peers: CloudPeers) -> HubPeer:
    cloud_peers.hubs[0].add_device("dev-1", DeviceCredential(symmetric_key=DEVICE_KEY))
    return cloud_peers.hubs[0]


def test_a_module_is_created_then_given_keys_then_deleted(
    cloud_peers: CloudPeers, hub: HubPeer
) -> None:
    token = device_token(hub, "dev-1")
    path = "/devices/dev-1/modules/edgeAgent"

    created = call(cloud_peers, "PUT", path, token=token, body=identity("edgeAgent"))
    assert created.status == 200
    module = created.json()
    assert module["generationId"] and module["etag"]  # type: ignore[index]
    assert module["authentication"] == {  # type: ignore[index]
        "symmetricKey": {"primaryKey": None, "secondaryKey": None},
        "x509Thumbprint": {"primaryThumbprint": None, "secondaryThumbprint": None},
        "type": "sas",
    }
    again = call(cloud_peers, "PUT", path, token=token, body=identity("edgeAgent"))
    assert again.status == 409
    assert again.headers["iothub-errorcode"] == "ModuleAlreadyExistsOnDevice"
    assert again.json()["Message"].startswith("ErrorCode:ModuleAlreadyExistsOnDevice;")  # type: ignore[index]

    keyed = call(
        cloud_peers,
        "PUT",
        path,
        token=token,
        body=identity("edgeAgent", MODULE_KEY, SECOND_KEY),
        if_match="*",
    )
    assert keyed.status == 200
    assert keyed.json()["generationId"] == module["generationId"]  # type: ignore[index]
    assert keyed.json()["etag"] != module["etag"]  # type: ignore[index]
    assert keyed.json()["authentication"]["symmetricKey"]["primaryKey"] == MODULE_KEY  # type: ignore[index]
    assert [
        m["moduleId"]
        for m in call(cloud_peers, "GET", "/devices/dev-1/modules", token=token).json()
    ] == ["$edgeAgent", "$edgeHub", "edgeAgent"]  # type: ignore[attr-defined, index]
    assert call(cloud_peers, "GET", path, token=token).json() == keyed.json()

    assert call(cloud_peers, "DELETE", path, token=token, if_match="*").status == 204
    gone = call(cloud_peers, "GET", path, token=token)
    assert (gone.status, gone.headers["iothub-errorcode"]) == (404, "ModuleNotFound")
    assert set(hub.modules("dev-1")) == set(SYSTEM_MODULES)


def test_an_edge_device_comes_with_system_modules_it_may_key_but_not_make_or_delete(
    cloud_peers: CloudPeers, hub: HubPeer
) -> None:
    token = device_token(hub, "dev-1")
    path = "/devices/dev-1/modules/$edgeAgent"
    made = hub.modules("dev-1")["$edgeAgent"]
    assert made.primary_key and made.secondary_key
    body = identity("$edgeAgent", MODULE_KEY, SECOND_KEY)
    created = call(cloud_peers, "PUT", path, body=body, token=token)
    assert created.status == 409
    keyed = call(cloud_peers, "PUT", path, body=body, token=token, if_match="*")
    assert keyed.status == 200
    assert keyed.json()["generationId"] == made.generation_id  # type: ignore[index]
    refused = call(cloud_peers, "DELETE", path, token=token, if_match="*")
    assert refused.status == 400
    assert "$edgeAgent" in hub.modules("dev-1")


def test_a_module_token_is_checked_against_either_key(
    cloud_peers: CloudPeers, hub: HubPeer
) -> None:
    token = device_token(hub, "dev-1")
    body = identity("sensor", MODULE_KEY, SECOND_KEY)
    assert (
        call(cloud_peers, "PUT", "/devices/dev-1/modules/sensor", token=token, body=body).status
        == 200
    )
    wrong = base64.b64encode(b"w" * 32).decode()

    assert hub.verify_module_token(
        "dev-1", "sensor", module_token(hub, "dev-1", "sensor", MODULE_KEY)
    )
    assert hub.verify_module_token(
        "dev-1", "sensor", module_token(hub, "dev-1", "sensor", SECOND_KEY)
    )
    assert not hub.verify_module_token(
        "dev-1", "sensor", module_token(hub, "dev-1", "sensor", wrong)
    )
    assert not hub.verify_module_token(
        "dev-1", "other", module_token(hub, "dev-1", "other", MODULE_KEY)
    )

    twin = call(
        cloud_peers,
        "GET",
        "/twins/dev-1/modules/sensor",
        token=module_token(hub, "dev-1", "sensor", MODULE_KEY),
        api="api-version=2021-04-12",
    )
    assert twin.status == 200
    assert (twin.json()["deviceId"], twin.json()["moduleId"]) == ("dev-1", "sensor")  # type: ignore[index]
    assert "properties" in twin.json()  # type: ignore[operator]
    refused = call(
        cloud_peers,
        "GET",
        "/twins/dev-1/modules/sensor",
        token=module_token(hub, "dev-1", "sensor", wrong),
    )
    assert refused.status == 401
    as_device = call(cloud_peers, "GET", "/twins/dev-1/modules/sensor", token=token)
    assert as_device.status == 401


@pytest.mark.parametrize(
    ("body", "if_match", "status"),
    [
        (identity("m", base64.b64encode(b"short").decode()), "*", 400),
        (identity("m", "not base64!"), "*", 400),
        ({"moduleId": "other", "deviceId": "dev-1"}, "*", 400),
        (identity("m"), '"not-the-etag"', 412),
    ],
    ids=["key-too-short", "key-not-base64", "moduleId-mismatch", "stale-etag"],
)
def test_bad_module_updates_are_refused(
    cloud_peers: CloudPeers, hub: HubPeer, body: object, if_match: str, status: int
) -> None:
    token = device_token(hub, "dev-1")
    call(cloud_peers, "PUT", "/devices/dev-1/modules/m", token=token, body=identity("m"))
    reply = call(
        cloud_peers, "PUT", "/devices/dev-1/modules/m", token=token, body=body, if_match=if_match
    )
    assert reply.status == status


def test_an_update_with_the_current_etag_is_accepted(cloud_peers: CloudPeers, hub: HubPeer) -> None:
    token = device_token(hub, "dev-1")
    created = call(cloud_peers, "PUT", "/devices/dev-1/modules/m", token=token, body=identity("m"))
    etag = created.json()["etag"]  # type: ignore[index]
    reply = call(
        cloud_peers,
        "PUT",
        "/devices/dev-1/modules/m",
        token=token,
        body=identity("m", MODULE_KEY),
        if_match=f'"{etag}"',
    )
    assert reply.status == 200
    assert call(cloud_peers, "DELETE", "/devices/dev-1/modules/m", token=token).status == 400
    assert (
        call(cloud_peers, "DELETE", "/devices/dev-1/modules/nope", token=token, if_match="*").status
        == 404
    )


@pytest.mark.parametrize(
    "make_token",
    [
        lambda hub: device_token(hub, "dev-1", base64.b64encode(b"w" * 32).decode()),
        lambda hub: device_token(hub, "dev-2"),
        lambda hub: sas_token(f"{hub.host}/devices/dev-1", DEVICE_KEY, key_name="device"),
        lambda hub: sas_token(f"{hub.host}/devices/dev-1", DEVICE_KEY, expiry=1),
        lambda hub: None,
    ],
    ids=["wrong-key", "other-device", "with-skn", "expired", "none"],
)
def test_a_request_without_the_device_credential_gets_401(
    cloud_peers: CloudPeers, hub: HubPeer, make_token: object
) -> None:
    reply = call(cloud_peers, "GET", "/devices/dev-1/modules", token=make_token(hub))  # type: ignore[operator]
    assert reply.status == 401
    assert reply.headers["iothub-errorcode"] == "IotHubUnauthorizedAccess"


def test_a_disabled_device_gets_401_until_enabled(cloud_peers: CloudPeers, hub: HubPeer) -> None:
    token = device_token(hub, "dev-1")
    hub.disable_device("dev-1")
    assert call(cloud_peers, "GET", "/devices/dev-1/modules", token=token).status == 401
    hub.enable_device("dev-1")
    assert call(cloud_peers, "GET", "/devices/dev-1/modules", token=token).status == 200


@pytest.mark.parametrize(
    ("version", "status"), [("2021-04-12", 200), ("2020-05-31-preview", 200), ("2016-02-03", 400)]
)
def test_only_the_known_api_versions_are_served(
    cloud_peers: CloudPeers, hub: HubPeer, version: str, status: int
) -> None:
    reply = call(
        cloud_peers,
        "GET",
        "/devices/dev-1/modules",
        token=device_token(hub, "dev-1"),
        api=f"api-version={version}",
    )
    assert reply.status == status


def test_x509_devices_prove_themselves_with_their_certificate(
    cloud_peers: CloudPeers, hub: HubPeer, tmp_path: Path
) -> None:
    own = self_signed("thumb-dev")
    hub.add_device("thumb-dev", DeviceCredential(x509_thumbprint=thumbprint_sha1(own.certificate)))
    hub.trust(own.certificate)
    group_ca = CertificateAuthority.generate("line 7 devices")
    hub.add_device("ca-dev", DeviceCredential(x509_ca=group_ca.certificate))
    issued = group_ca.issue_client_cert("ca-dev")
    files = {}
    for name, cert in (("thumb", own), ("ca", issued)):
        files[name] = (tmp_path / f"{name}.pem", tmp_path / f"{name}-key.pem")
        cert.write(*files[name])

    assert call(cloud_peers, "GET", "/devices/thumb-dev/modules", cert=files["thumb"]).status == 200
    assert call(cloud_peers, "GET", "/devices/ca-dev/modules", cert=files["ca"]).status == 200
    assert call(cloud_peers, "GET", "/devices/thumb-dev/modules", cert=files["ca"]).status == 401
    assert call(cloud_peers, "GET", "/devices/ca-dev/modules", cert=files["thumb"]).status == 401


def test_injected_faults_and_the_request_log(cloud_peers: CloudPeers, hub: HubPeer) -> None:
    token = device_token(hub, "dev-1")
    hub.fail_next(1, 429, retry_after=3)
    hub.malformed_next(1)

    throttled = call(cloud_peers, "GET", "/devices/dev-1/modules", token=token)
    broken = call(cloud_peers, "GET", "/devices/dev-1/modules", token=token)
    fine = call(cloud_peers, "GET", "/devices/dev-1/modules", token=token)

    assert (throttled.status, throttled.headers["retry-after"]) == (429, "3")
    assert throttled.headers["iothub-errorcode"] == "ThrottlingException"
    assert broken.status == 200
    with pytest.raises(ValueError):
        broken.json()
        assert [m["moduleId"] for m in fine.json()] == list(SYSTEM_MODULES)  # type: ignore[attr-defined, index]
    assert [status for _, _, status in hub.requests] == [429, 200, 200]
    assert cloud_peers.hubs[1].requests == []
    assert cloud_peers.dps.requests == []


def test_the_registry_survives_a_restart_with_a_state_file(
    cloud_peers: CloudPeers, tmp_path: Path
) -> None:
    state = tmp_path / "hub.json"
    server_cert = cloud_peers.ca.issue_server_cert()
    first = HubPeer(server_cert, [cloud_peers.ca.certificate], state_file=state)
    group_ca = CertificateAuthority.generate("line 7 devices")
    first.add_device("dev-1", DeviceCredential(symmetric_key=DEVICE_KEY))
    first.add_device("ca-dev", DeviceCredential(x509_ca=group_ca.certificate))
    first.disable_device("ca-dev")
    first.start()
    try:
        body = identity("m", MODULE_KEY)
        token = device_token(first, "dev-1")
        assert (
            send(
                first.port,
                cloud_peers.ca_pem_path,
                "PUT",
                f"/devices/dev-1/modules/m?{API}",
                body=body,
                headers={"Authorization": token},
            ).status
            == 200
        )
    finally:
        first.stop()

    second = HubPeer(server_cert, [cloud_peers.ca.certificate], state_file=state)
    second.stop()  # never started: closes its listening socket
    assert second.devices == first.devices
    assert second.modules("dev-1") == first.modules("dev-1")
    assert second.modules("dev-1")["m"].primary_key == MODULE_KEY


def test_the_program_writes_its_peers_file_and_stops_on_sigterm(tmp_path: Path) -> None:
    config = tmp_path / "cloud.json"
    config.write_text(
        json.dumps(
            {
                "id_scope": "0ne0000ABCD",
                "individual": {"dev-1": DEVICE_KEY},
                "tpm": {"t": "trust_first"},
            }
        )
    )
    state_dir = tmp_path / "cloud"
    program = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.peers.cloud",
            "--state-dir",
            str(state_dir),
            "--config",
            str(config),
        ],
        cwd=REPO,
        env=program_env(),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        peers_file = state_dir / "peers.json"
        wait_until(peers_file.exists, timeout_s=30, what="peers.json")
        peers = json.loads(peers_file.read_text())
        assert peers["id_scope"] == "0ne0000ABCD"
        assert len(peers["hubs"]) == 2
        assert peers["pid"] == program.pid
        dps_port = int(peers["dps"].rsplit(":", 1)[1])
        resource = "0ne0000ABCD/registrations/dev-1"
        token = sas_token(resource, DEVICE_KEY, key_name="registration")
        reply = send(
            dps_port,
            Path(peers["ca"]),
            "PUT",
            "/0ne0000ABCD/registrations/dev-1/register?api-version=2021-06-01",
            body={"registrationId": "dev-1"},
            headers={"Authorization": token},
        )
        assert reply.status == 202
    finally:
        program.send_signal(signal.SIGTERM)
        _, errors = program.communicate(timeout=30)
    assert program.returncode == 0, errors
