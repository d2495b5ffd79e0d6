"""Bad input from the cloud or the configuration, against `edgekeeper run` and the DPS and hub
peers: each failure gets an error that names what to check, nothing cached is lost, and the
daemon tries again later with back-off (or after the server's Retry-After), never in a loop.

The device clock cannot be moved under a running daemon here, so the clock case drives the
daemon's own DPS and hub clients in this process with a clock a day behind: the peers refuse
the expired tokens as the real services do, and the errors say to check the clock."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import pytest

from firmware.http.client import Deadlines
from firmware.identity import credentials as creds
from firmware.identity.cloud import CloudCalls, HubIdentities
from firmware.identity.dps import DpsRegistration
from firmware.identity.errors import CloudUnauthorized
from firmware.identity.model import AGENT_IDENTITY, HUB_IDENTITY
from firmware.identity.sas import DPS_KEY_NAME
from tests.integration.identity.test_provisioning_daemon import (
    REGISTRATION,
    dps_toml,
    enrolled,
    module_token,
    new_key,
    online,
    online_gateway,
    status,
    trust,
)
from tests.peers.cloud import CloudPeers
from tests.peers.cloud_ca import CertificateAuthority
from tests.peers.gateway import Gateway
from tests.peers.waiting import wait_until

pytestmark = pytest.mark.docker

IDENTITY_FILE = Path("state") / "device-identity.json"


def waiting(gw: Gateway, *, after: float | None = None) -> dict:
    """The provisioning status once the daemon waits after a failure (one newer than `after`)."""

    def failed() -> dict | None:
        state = status(gw)
        at = state.get("lastAt")
        if state.get("state") != "waiting for provisioning" or at is None:
            return None
        return state if after is None or at > after else None

    return wait_until(failed, timeout_s=30, what="a failed provisioning attempt")


def identity_file(gw: Gateway) -> Path:
    return gw.data_dir / IDENTITY_FILE


def identities(gw: Gateway) -> list[dict]:
    return gw.request("GET", "/identities").json()["identities"]


# first provisioning, no cache


def test_a_malformed_dps_answer_is_named_and_provisioning_tried_again(
    gateway, cloud_peers: CloudPeers
) -> None:
    toml = enrolled(cloud_peers)
    cloud_peers.dps.malformed_next(1)
    gw = gateway(toml, top_toml=trust(cloud_peers))
    state = waiting(gw)
    assert "DPS" in state["lastResult"] and "proxy" in state["lastResult"], state
    assert state["nextRetryAt"] > state["lastAt"]
    assert not identity_file(gw).exists()
    online(gw, cloud_peers)


def test_a_wrong_symmetric_key_names_the_registration_and_backs_off(
    gateway, cloud_peers: CloudPeers
) -> None:
    cloud_peers.dps.enroll_symmetric(REGISTRATION, new_key())
    gw = gateway(dps_toml(cloud_peers, new_key()), top_toml=trust(cloud_peers))
    first = waiting(gw)
    result = first["lastResult"]
    assert REGISTRATION in result and "401" in result, result
    assert "enrollment" in result and "key" in result, result
    second = waiting(gw, after=first["lastAt"])
    assert second["lastAt"] >= first["nextRetryAt"] - 0.5, (first, second)
    first_wait = first["nextRetryAt"] - first["lastAt"]
    second_wait = second["nextRetryAt"] - second["lastAt"]
    assert second_wait > first_wait, (first, second)
    registers = [r for r in cloud_peers.dps.requests if r.method == "PUT"]
    assert len(registers) == 2 and all(r.status == 401 for r in registers), registers
    assert not identity_file(gw).exists()


def test_a_disabled_enrollment_is_rejected_by_name_until_enabled(
    gateway, cloud_peers: CloudPeers
) -> None:
    toml = enrolled(cloud_peers)
    cloud_peers.dps.reject(REGISTRATION, "disabled")
    gw = gateway(toml, top_toml=trust(cloud_peers))
    result = waiting(gw)["lastResult"]
    assert REGISTRATION in result and "status disabled" in result, result
    assert "enable the enrollment" in result, result
    cloud_peers.dps.accept(REGISTRATION)
    online(gw, cloud_peers)


def test_a_tls_failure_names_tls_the_ca_and_the_clock(
    gateway, cloud_peers: CloudPeers, tmp_path: Path
) -> None:
    toml = enrolled(cloud_peers)
    stranger = CertificateAuthority.generate("another CA").save(tmp_path)
    top = f'trust_bundle_cert = "file://{stranger}"\ncloud_retries = 0\n'
    gw = gateway(toml, top_toml=top)
    result = waiting(gw)["lastResult"]
    assert "TLS" in result and "clock" in result and "CA" in result, result
    assert str(cloud_peers.dps.port) in result, result
    assert cloud_peers.dps.requests == []  # no request went out over an untrusted connection


@pytest.mark.parametrize(("retries", "retry_after"), [(0, 8), (2, 3)])
def test_dps_retry_after_is_waited_before_the_next_try(
    gateway, cloud_peers: CloudPeers, retries: int, retry_after: int
) -> None:
    """With `retries = 0` the 429 ends the call and the daemon's back-off honours the advice;
    with retries left the call itself waits it (within 10 s)."""
    toml = enrolled(cloud_peers)
    cloud_peers.dps.fail_next(1, 429, retry_after=retry_after)
    top = f'trust_bundle_cert = "file://{cloud_peers.ca_pem_path}"\ncloud_retries = {retries}\n'
    gw = gateway(toml, top_toml=top)
    seen_429 = _moment(cloud_peers, 1)
    seen_next = _moment(cloud_peers, 2)
    assert cloud_peers.dps.requests[0].status == 429
    assert seen_next - seen_429 >= retry_after - 0.2, (seen_429, seen_next)
    online(gw, cloud_peers)


def _moment(cloud: CloudPeers, count: int) -> float:
    """When DPS had answered `count` requests (seen within the wait's 10 ms polling)."""
    wait_until(
        lambda: len(cloud.dps.requests) >= count,
        timeout_s=30,
        what=f"DPS request {count}",
        interval_s=0.01,
    )
    return time.monotonic()


# a malformed hub answer while a module identity is made


def test_a_malformed_hub_answer_during_module_creation_is_retried(
    gateway, cloud_peers: CloudPeers, client_image
) -> None:
    gw, device = online_gateway(gateway, cloud_peers)
    hub = cloud_peers.hubs[0]
    before = identities(gw)
    cloud_peers.hubs[0].malformed_next(1)
    gw.deploy("sensor", client_image)
    gw.container_of("sensor")
    assert "the hub" in gw.log and "proxy" in gw.log  # the failure was logged, named
    on_hub = hub.modules(device)
    daemon = {i["moduleId"] for i in identities(gw)}
    assert set(on_hub) - {HUB_IDENTITY} == daemon == {AGENT_IDENTITY, "sensor"}
    assert all(module.primary_key for module in on_hub.values())
    assert [i for i in identities(gw) if i["moduleId"] == AGENT_IDENTITY] == before
    token = module_token(gw, "sensor", hub.host, device)
    assert hub.verify_module_token(device, "sensor", token)


# a failed reprovision keeps the identity in force


REPROVISION_FAULTS = {
    "malformed": lambda dps: dps.malformed_next(1),
    "refused": lambda dps: dps.unauthorized(REGISTRATION),
    "disabled": lambda dps: dps.reject(REGISTRATION, "disabled"),
    "throttled": lambda dps: dps.fail_next(1, 429, retry_after=1),
}
REPROVISION_SAYS = {
    "malformed": "proxy",
    "refused": "401",
    "disabled": "status disabled",
    "throttled": "429",
}


@pytest.mark.parametrize("fault", sorted(REPROVISION_FAULTS))
def test_a_failed_reprovision_keeps_identity_cache_and_modules(
    gateway, cloud_peers: CloudPeers, client_image, fault: str
) -> None:
    gw, device = online_gateway(gateway, cloud_peers)
    hub = cloud_peers.hubs[0]
    gw.deploy("sensor", client_image)
    containers = {name: gw.container_of(name) for name in (gw.agent, "sensor")}
    wait_until(lambda: "sensor" in hub.modules(device), timeout_s=30, what="sensor on the hub")
    cached = identity_file(gw).read_bytes()
    known = identities(gw)
    REPROVISION_FAULTS[fault](cloud_peers.dps)
    done = gw.cli("system", "reprovision")
    assert done.returncode == 1, done
    assert REPROVISION_SAYS[fault] in done.stderr, done.stderr
    state = status(gw)
    assert (state["hub"], state["deviceId"]) == (hub.host, device), state
    assert REPROVISION_SAYS[fault] in state["lastResult"], state
    assert identity_file(gw).read_bytes() == cached
    assert identities(gw) == known
    assert {name: gw.container_of(name) for name in containers} == containers
    token = module_token(gw, "sensor", hub.host, device)
    assert hub.verify_module_token(device, "sensor", token)


# the device clock


async def test_tokens_from_a_clock_far_behind_are_refused_and_the_error_names_the_clock(
    cloud_peers: CloudPeers,
) -> None:
    key = new_key()
    cloud_peers.dps.enroll_symmetric(REGISTRATION, key)
    tls = creds.trust_context(f"file://{cloud_peers.ca_pem_path}")
    signer = creds.software_signer(base64.b64decode(key))
    right = creds.DeviceCredentials(signer, tls)
    behind = creds.DeviceCredentials(signer, tls, clock=lambda: time.time() - 86400)
    calls = CloudCalls(
        right.endpoint, deadlines=Deadlines(connect_s=5, read_s=5, overall_s=10), retries=0
    )

    async def register(device: creds.DeviceCredentials):
        return await calls.register(
            cloud_peers.dps_endpoint,
            DpsRegistration(cloud_peers.id_scope, REGISTRATION),
            lambda audience: device.authorize(audience, DPS_KEY_NAME),
            None,
            10,
        )

    with pytest.raises(CloudUnauthorized) as refused:
        await register(behind)
    assert "clock" in refused.value.render() and REGISTRATION in refused.value.render()
    assigned = await register(right)  # the same key with the right time is accepted
    assert assigned.device_id == REGISTRATION
    hub = HubIdentities(calls, assigned.hub, assigned.device_id, behind.authorize)
    with pytest.raises(CloudUnauthorized) as hub_refused:
        await hub.list()
    assert "clock" in hub_refused.value.render()
    on_time = HubIdentities(calls, assigned.hub, assigned.device_id, right.authorize)
    # an IoT Edge device comes with its system modules
    assert {module.module_id for module in await on_time.list()} == {AGENT_IDENTITY, HUB_IDENTITY}
