"""The DPS peer answers the public DPS device REST API: registration and polling, SAS (individual
and group keys), X.509 and TPM attestation, assignment to a hub, and the injected faults."""

from __future__ import annotations

import base64
import socket
import struct
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.peers.cloud import CloudPeers
from tests.peers.cloud_ca import CertificateAuthority, IssuedCert, self_signed
from tests.unit.peers.cloud_requests import Reply, sas_token, send

API = "api-version=2021-06-01"
KEY = base64.b64encode(bytes(range(32))).decode()
GROUP_KEY = (
    "8isrFI1sGsIlvvFSSFRiMfCNzv21fjbE/+ah/lSh3lF8e2YG1Te7w1KpZhJFFXJrqYKi9yegxkqIChbqOS9Egw=="
)
GROUP_DEVICE = "sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6"
GROUP_DEVICE_KEY = "Jsm0lyGpjaVYVP2g3FnmnmG9dI/9qU24wNoykUmermc="  # provisioning.md §2
EK_POLICY = bytes.fromhex("837197674484b3f81a90cc8d46a5d724fd52d76e06520b64f2a1da1b331469aa")


def dps_token(cloud: CloudPeers, registration_id: str, key: str, **options: object) -> str:
    resource = f"{cloud.id_scope}/registrations/{registration_id}"
    return sas_token(resource, key, key_name="registration", **options)  # type: ignore[arg-type]


def register(
    cloud: CloudPeers,
    registration_id: str,
    *,
    token: str | None = None,
    body: dict[str, object] | None = None,
    cert: tuple[Path, Path] | None = None,
    api: str = API,
) -> Reply:
    return send(
        cloud.dps.port,
        cloud.ca_pem_path,
        "PUT",
        f"/{cloud.id_scope}/registrations/{registration_id}/register?{api}",
        body=body or {"registrationId": registration_id},
        headers={"Authorization": token} if token else {},
        client_cert=cert,
    )


def poll(
    cloud: CloudPeers,
    registration_id: str,
    operation_id: str,
    *,
    token: str | None = None,
    cert: tuple[Path, Path] | None = None,
) -> Reply:
    return send(
        cloud.dps.port,
        cloud.ca_pem_path,
        "GET",
        f"/{cloud.id_scope}/registrations/{registration_id}/operations/{operation_id}?{API}",
        headers={"Authorization": token} if token else {},
        client_cert=cert,
    )


def provision(
    cloud: CloudPeers,
    registration_id: str,
    *,
    token: str | None = None,
    cert: tuple[Path, Path] | None = None,
) -> dict[str, object]:
    accepted = register(cloud, registration_id, token=token, cert=cert)
    assert accepted.status == 202, accepted.body
    status = poll(cloud, registration_id, accepted.json()["operationId"], token=token, cert=cert)  # type: ignore[index]
    assert status.status == 200, status.body
    return status.json()  # type: ignore[return-value]


def device_files(tmp_path: Path, issued: IssuedCert) -> tuple[Path, Path]:
    cert, key = tmp_path / "device.pem", tmp_path / "device-key.pem"
    issued.write(cert, key)
    return cert, key


def tpm2b_public(key: rsa.RSAPrivateKey, attributes: int, policy: bytes) -> bytes:
    """A marshalled TPM2B_PUBLIC of an RSA-2048 storage key (EK or SRK template)."""
    modulus = key.public_key().public_numbers().n.to_bytes(256, "big")
    public = (
        struct.pack(">HHI", 0x0001, 0x000B, attributes)  # RSA, SHA256, objectAttributes
        + struct.pack(">H", len(policy))
        + policy
        + struct.pack(">HHH", 0x0006, 128, 0x0043)  # AES-128-CFB
        + struct.pack(">HHI", 0x0010, 2048, 0)  # scheme NULL, 2048 bits, default exponent
        + struct.pack(">H", len(modulus))
        + modulus
    )
    return struct.pack(">H", len(public)) + public


def new_ek() -> bytes:
    return tpm2b_public(rsa.generate_private_key(65537, 2048), 0x000300B2, EK_POLICY)


def new_srk() -> bytes:
    return tpm2b_public(rsa.generate_private_key(65537, 2048), 0x00030472, b"")


def test_individual_key_registration_assigns_the_device_to_the_first_hub(
    cloud_peers: CloudPeers,
) -> None:
    cloud_peers.dps.enroll_symmetric("dev-1", KEY)
    token = dps_token(cloud_peers, "dev-1", KEY)

    accepted = register(cloud_peers, "dev-1", token=token)
    assert accepted.status == 202
    assert accepted.headers["retry-after"] == "1"
    assert accepted.json()["status"] == "assigning"  # type: ignore[index]
    done = poll(cloud_peers, "dev-1", accepted.json()["operationId"], token=token)  # type: ignore[index]

    assert done.status == 200
    outcome = done.json()
    state = outcome["registrationState"]  # type: ignore[index]
    assert outcome["status"] == "assigned"  # type: ignore[index]
    assert state["assignedHub"] == cloud_peers.hubs[0].host
    assert state["deviceId"] == "dev-1"
    assert state["substatus"] == "initialAssignment"
    assert {"createdDateTimeUtc", "lastUpdatedDateTimeUtc", "etag"} <= state.keys()
    assert cloud_peers.hubs[0].devices["dev-1"].credential.symmetric_key == KEY
    assert cloud_peers.hubs[1].devices == {}


@pytest.mark.parametrize("encode_slash", [True, False], ids=["slash-encoded", "slash-kept"])
def test_both_encodings_of_the_resource_are_accepted(
    cloud_peers: CloudPeers, encode_slash: bool
) -> None:
    cloud_peers.dps.enroll_symmetric("Dev-Upper", KEY)
    token = dps_token(cloud_peers, "Dev-Upper", KEY, encode_slash=encode_slash)
    assert provision(cloud_peers, "Dev-Upper", token=token)["status"] == "assigned"


def test_group_enrollment_derives_the_device_key_of_the_reference_vector(
    cloud_peers: CloudPeers,
) -> None:
    cloud_peers.dps.enroll_group("line-7", GROUP_KEY)
    token = dps_token(cloud_peers, GROUP_DEVICE, GROUP_DEVICE_KEY)

    assert provision(cloud_peers, GROUP_DEVICE, token=token)["status"] == "assigned"
    hub_device = cloud_peers.hubs[0].devices[GROUP_DEVICE]
    assert hub_device.credential.symmetric_key == GROUP_DEVICE_KEY


@pytest.mark.parametrize(
    "token_options",
    [
        {"key": base64.b64encode(b"x" * 32).decode()},
        {"expiry": int(time.time()) - 1},
        {"key_name": "device"},
        {"registration_id": "someone-else"},
    ],
    ids=["wrong-key", "expired", "wrong-skn", "other-registration"],
)
def test_a_bad_sas_token_gets_401_with_the_dps_error_body(
    cloud_peers: CloudPeers, token_options: dict[str, object]
) -> None:
    cloud_peers.dps.enroll_symmetric("dev-1", KEY)
    resource = (
        f"{cloud_peers.id_scope}/registrations/{token_options.get('registration_id', 'dev-1')}"
    )
    token = sas_token(
        resource,
        str(token_options.get("key", KEY)),
        key_name=str(token_options.get("key_name", "registration")),
        expiry=token_options.get("expiry"),  # type: ignore[arg-type]
    )

    reply = register(cloud_peers, "dev-1", token=token)

    assert reply.status == 401
    error = reply.json()
    assert error["errorCode"] == 401002  # type: ignore[index]
    assert {"trackingId", "message", "timestampUtc"} <= error.keys()  # type: ignore[attr-defined]
    assert reply.headers["x-ms-error-code"] == "401002"
    assert cloud_peers.hubs[0].devices == {}


@pytest.mark.parametrize(
    ("version", "status"),
    [("2019-03-31", 202), ("2021-10-01", 202), ("2018-11-01", 400), (None, 400)],
)
def test_only_the_known_api_versions_are_served(
    cloud_peers: CloudPeers, version: str | None, status: int
) -> None:
    cloud_peers.dps.enroll_symmetric("dev-1", KEY)
    api = f"api-version={version}" if version else "x=1"
    token = dps_token(cloud_peers, "dev-1", KEY)
    assert register(cloud_peers, "dev-1", token=token, api=api).status == status


def test_the_operation_stays_assigning_until_the_delay_has_passed(cloud_peers: CloudPeers) -> None:
    cloud_peers.dps.enroll_symmetric("dev-1", KEY)
    cloud_peers.dps.assigning_delay_s = 0.3
    cloud_peers.dps.retry_after_s = 4
    token = dps_token(cloud_peers, "dev-1", KEY)
    operation = register(cloud_peers, "dev-1", token=token).json()["operationId"]  # type: ignore[index]

    early = poll(cloud_peers, "dev-1", operation, token=token)
    time.sleep(0.3)  # the configured assigning delay
    late = poll(cloud_peers, "dev-1", operation, token=token)

    assert (early.status, early.json()["status"]) == (202, "assigning")  # type: ignore[index]
    assert early.headers["retry-after"] == "4"
    assert (late.status, late.json()["status"]) == (200, "assigned")  # type: ignore[index]


def test_polling_needs_the_credential_and_a_known_operation(cloud_peers: CloudPeers) -> None:
    cloud_peers.dps.enroll_symmetric("dev-1", KEY)
    token = dps_token(cloud_peers, "dev-1", KEY)
    operation = register(cloud_peers, "dev-1", token=token).json()["operationId"]  # type: ignore[index]

    assert poll(cloud_peers, "dev-1", operation).status == 401
    assert poll(cloud_peers, "dev-1", "4.0.unknown", token=token).status == 404


def test_injected_failures_come_first_then_service_resumes(cloud_peers: CloudPeers) -> None:
    cloud_peers.dps.enroll_symmetric("dev-1", KEY)
    cloud_peers.dps.fail_next(2, 503, retry_after=7)
    token = dps_token(cloud_peers, "dev-1", KEY)

    first, second = (
        register(cloud_peers, "dev-1", token=token),
        register(cloud_peers, "dev-1", token=token),
    )
    third = register(cloud_peers, "dev-1", token=token)

    assert (first.status, first.headers["retry-after"]) == (503, "7")
    assert second.status == 503
    assert first.json()["errorCode"] == 503001  # type: ignore[index]
    assert third.status == 202
    path = f"/{cloud_peers.id_scope}/registrations/dev-1/register"
    assert cloud_peers.dps.requests == [("PUT", path, 503), ("PUT", path, 503), ("PUT", path, 202)]


def test_a_malformed_answer_is_200_with_broken_json(cloud_peers: CloudPeers) -> None:
    cloud_peers.dps.malformed_next(1)
    reply = register(cloud_peers, "dev-1")
    assert reply.status == 200
    with pytest.raises(ValueError):
        reply.json()


def test_a_stalled_answer_times_the_client_out_until_the_stall_ends(
    cloud_peers: CloudPeers,
) -> None:
    cloud_peers.dps.enroll_symmetric("dev-1", KEY)
    token = dps_token(cloud_peers, "dev-1", KEY)
    cloud_peers.dps.stall(2)
    with pytest.raises(socket.timeout):
        send(
            cloud_peers.dps.port,
            cloud_peers.ca_pem_path,
            "PUT",
            f"/{cloud_peers.id_scope}/registrations/dev-1/register?{API}",
            body={"registrationId": "dev-1"},
            headers={"Authorization": token},
            timeout_s=0.2,
        )
    cloud_peers.dps.stall(0)
    assert register(cloud_peers, "dev-1", token=token).status == 202


@pytest.mark.parametrize("status", ["disabled", "failed"])
def test_a_rejected_registration_ends_with_its_status(cloud_peers: CloudPeers, status: str) -> None:
    cloud_peers.dps.enroll_symmetric("dev-1", KEY)
    cloud_peers.dps.reject("dev-1", status)

    outcome = provision(cloud_peers, "dev-1", token=dps_token(cloud_peers, "dev-1", KEY))

    assert outcome["status"] == status
    assert outcome["registrationState"]["status"] == status  # type: ignore[index]
    assert "assignedHub" not in outcome["registrationState"]  # type: ignore[operator]
    assert cloud_peers.hubs[0].devices == {}


def test_an_unauthorized_registration_gets_401_until_accepted(cloud_peers: CloudPeers) -> None:
    cloud_peers.dps.enroll_symmetric("dev-1", KEY)
    token = dps_token(cloud_peers, "dev-1", KEY)
    cloud_peers.dps.unauthorized("dev-1")
    assert register(cloud_peers, "dev-1", token=token).status == 401
    cloud_peers.dps.accept("dev-1")
    assert register(cloud_peers, "dev-1", token=token).status == 202


def test_a_moved_device_is_assigned_the_other_hub_with_the_move_substatus(
    cloud_peers: CloudPeers,
) -> None:
    cloud_peers.dps.enroll_symmetric("dev-1", KEY)
    token = dps_token(cloud_peers, "dev-1", KEY)
    first = provision(cloud_peers, "dev-1", token=token)["registrationState"]
    again = provision(cloud_peers, "dev-1", token=token)["registrationState"]
    cloud_peers.dps.move_device("dev-1", cloud_peers.hubs[1])
    moved = provision(cloud_peers, "dev-1", token=token)["registrationState"]

    assert (first["assignedHub"], first["substatus"]) == (
        cloud_peers.hubs[0].host,
        "initialAssignment",
    )  # type: ignore[index]
    assert (again["assignedHub"], again["substatus"]) == (
        cloud_peers.hubs[0].host,
        "initialAssignment",
    )  # type: ignore[index]
    assert (moved["assignedHub"], moved["substatus"]) == (
        cloud_peers.hubs[1].host,
        "deviceDataMigrated",
    )  # type: ignore[index]
    assert cloud_peers.hubs[1].devices["dev-1"].credential.symmetric_key == KEY


def test_the_payload_is_recorded(cloud_peers: CloudPeers) -> None:
    cloud_peers.dps.enroll_symmetric("dev-1", KEY)
    body = {"registrationId": "dev-1", "payload": {"site": "north"}}
    register(cloud_peers, "dev-1", token=dps_token(cloud_peers, "dev-1", KEY), body=body)
    assert cloud_peers.dps.payloads["dev-1"] == {"site": "north"}


def test_an_x509_device_issued_by_an_enrolled_ca_is_assigned(
    cloud_peers: CloudPeers, tmp_path: Path
) -> None:
    group_ca = CertificateAuthority.generate("line 7 devices")
    cloud_peers.dps.enroll_x509_ca(group_ca.certificate)
    cert = device_files(tmp_path, group_ca.issue_client_cert("x509-dev"))

    outcome = provision(cloud_peers, "x509-dev", cert=cert)

    assert outcome["status"] == "assigned"
    credential = cloud_peers.hubs[0].devices["x509-dev"].credential
    assert credential.x509_ca == group_ca.certificate
    assert credential.symmetric_key is None


def test_an_x509_device_enrolled_by_thumbprint_is_assigned(
    cloud_peers: CloudPeers, tmp_path: Path
) -> None:
    issued = self_signed("thumb-dev")
    cloud_peers.dps.enroll_x509("thumb-dev", issued.certificate)
    assert (
        provision(cloud_peers, "thumb-dev", cert=device_files(tmp_path, issued))["status"]
        == "assigned"
    )
    assert cloud_peers.hubs[0].devices["thumb-dev"].credential.x509_thumbprint is not None


def test_an_x509_certificate_for_another_name_or_not_enrolled_gets_401(
    cloud_peers: CloudPeers, tmp_path: Path
) -> None:
    cert = device_files(tmp_path, cloud_peers.ca.issue_client_cert("x509-dev"))
    assert register(cloud_peers, "x509-dev", cert=cert).status == 401  # the CA is not enrolled
    cloud_peers.dps.enroll_x509_ca(cloud_peers.ca.certificate)
    assert register(cloud_peers, "other-dev", cert=cert).status == 401
    assert register(cloud_peers, "x509-dev", cert=cert).status == 202


def test_a_tpm_device_with_another_endorsement_key_gets_no_challenge(
    cloud_peers: CloudPeers,
) -> None:
    cloud_peers.dps.enroll_tpm("tpm-dev", new_ek())
    body = {
        "registrationId": "tpm-dev",
        "tpm": {
            "endorsementKey": base64.b64encode(new_ek()).decode(),
            "storageRootKey": base64.b64encode(new_srk()).decode(),
        },
    }
    reply = register(cloud_peers, "tpm-dev", body=body)
    assert reply.status == 401
    assert "authenticationKey" not in reply.json()  # type: ignore[operator]
    assert cloud_peers.dps.tpm_key("tpm-dev") is None


def test_a_tpm_device_answers_the_challenge_with_the_key_it_carries(
    cloud_peers: CloudPeers,
) -> None:
    pytest.importorskip(
        "tests.peers.tpm_challenge", reason="tests/peers/tpm_challenge.py (helper H3) not there yet"
    )
    cloud_peers.dps.enroll_tpm("tpm-dev", None)  # trust the first EK seen
    ek = new_ek()
    tpm = {
        "endorsementKey": base64.b64encode(ek).decode(),
        "storageRootKey": base64.b64encode(new_srk()).decode(),
    }

    challenge = register(cloud_peers, "tpm-dev", body={"registrationId": "tpm-dev", "tpm": tpm})
    assert challenge.status == 401
    assert challenge.json()["keyName"] == "registration"  # type: ignore[index]
    assert base64.b64decode(challenge.json()["authenticationKey"])  # type: ignore[index]
    hmac_key = cloud_peers.dps.tpm_key("tpm-dev")
    assert hmac_key is not None and len(hmac_key) == 32
    key_b64 = base64.b64encode(hmac_key).decode()

    outcome = provision(cloud_peers, "tpm-dev", token=dps_token(cloud_peers, "tpm-dev", key_b64))

    assert outcome["status"] == "assigned"
    assert cloud_peers.hubs[0].devices["tpm-dev"].credential.symmetric_key == key_b64
    other = {**tpm, "endorsementKey": base64.b64encode(new_ek()).decode()}
    assert (
        "authenticationKey"
        not in register(
            cloud_peers, "tpm-dev", body={"registrationId": "tpm-dev", "tpm": other}
        ).json()
    )  # type: ignore[operator]
