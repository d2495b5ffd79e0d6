"""The gateway provisions with each attestation that holds a key: DPS TPM attestation on swtpm
(challenge imported and activated in the TPM, SAS tokens HMAC'd in the TPM), and X.509 with the
identity key in a file, on a SoftHSM2 token or in the TPM (the TLS handshake signed there).
Module identities reach the hub and a module's token verifies with the key the hub holds."""

from __future__ import annotations

import base64
import time
import uuid
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from firmware.identity.model import AGENT_IDENTITY
from firmware.keys.backend import KeyKind
from tests.integration.identity.test_provisioning_daemon import (
    REGISTRATION,
    module_token,
    online,
    status,
    trust,
)
from tests.peers.cloud import CloudPeers
from tests.peers.waiting import wait_until


def tpm_toml(cloud: CloudPeers, tcti: str, registration_id: str | None = REGISTRATION) -> str:
    named = f'registration_id = "{registration_id}"\n' if registration_id else ""
    return (
        f'[tpm]\ntcti = "{tcti}"\n\n'
        f'[provisioning]\nsource = "dps"\nglobal_endpoint = "{cloud.dps_endpoint}"\n'
        f'id_scope = "{cloud.id_scope}"\n\n'
        f'[provisioning.attestation]\nmethod = "tpm"\n{named}'
    )


def test_tpm_attestation_brings_the_gateway_online(
    gateway, cloud_peers: CloudPeers, fresh_swtpm
) -> None:
    cloud_peers.dps.enroll_tpm(REGISTRATION, None)
    gw = gateway(tpm_toml(cloud_peers, fresh_swtpm.tcti), top_toml=trust(cloud_peers))
    device = online(gw, cloud_peers)
    hub = cloud_peers.hubs[0]
    assert hub.devices[device].credential.symmetric_key == _b64(cloud_peers.dps.tpm_key(device))
    token = module_token(gw, gw.agent, hub.host, device)
    assert hub.verify_module_token(device, AGENT_IDENTITY, token)
    assert status(gw)["state"] == "provisioned"


def test_a_second_tpm_attestation_replaces_the_key_only_once_assigned(
    gateway, cloud_peers: CloudPeers, fresh_swtpm, client_image
) -> None:
    cloud_peers.dps.enroll_tpm(REGISTRATION, None)
    gw = gateway(tpm_toml(cloud_peers, fresh_swtpm.tcti), top_toml=trust(cloud_peers))
    device = online(gw, cloud_peers)
    first_key = cloud_peers.dps.tpm_key(device)
    cloud_peers.dps.reject(REGISTRATION, "disabled")
    failed = gw.cli("system", "reprovision")
    assert failed.returncode == 1 and "disabled" in failed.stderr
    # the TPM still signs with the first key: the hub accepts the device's own calls
    hub = cloud_peers.hubs[0]
    gw.deploy("sensor", client_image)
    wait_until(lambda: "sensor" in hub.modules(device), timeout_s=60, what="sensor on the hub")
    cloud_peers.dps.accept(REGISTRATION)
    time.sleep(5)  # reprovisions are spaced after a failed one
    assert gw.cli("system", "reprovision").returncode == 0
    assert cloud_peers.dps.tpm_key(device) != first_key
    token = module_token(gw, "sensor", hub.host, device)
    assert hub.verify_module_token(device, "sensor", token)


@pytest.mark.parametrize("where", ["file", "pkcs11", "tpm"])
def test_x509_attestation_signs_the_handshake_where_the_key_lives(
    gateway, cloud_peers: CloudPeers, softhsm, fresh_swtpm, tmp_path: Path, where: str
) -> None:
    cloud_peers.dps.enroll_x509_ca(cloud_peers.ca.certificate)
    cert_path = tmp_path / "device.pem"
    key_path = tmp_path / "device.key"
    token = softhsm.new_token(f"x509-{uuid.uuid4().hex[:6]}")
    identity_pk = {"file": f"file://{key_path}", "pkcs11": "device-id", "tpm": "device-id"}
    gw = gateway(
        f'[provisioning]\nsource = "dps"\nglobal_endpoint = "{cloud_peers.dps_endpoint}"\n'
        f'id_scope = "{cloud_peers.id_scope}"\n\n'
        f'[provisioning.attestation]\nmethod = "x509"\n'
        f'identity_cert = "file://{cert_path}"\nidentity_pk = "{identity_pk[where]}"\n\n'
        f'[tpm]\ntcti = "{fresh_swtpm.tcti}"\n\n'
        f'[keys.pkcs11]\nmodule = "{softhsm.module}"\ntoken_label = "{token.label}"\n'
        f'pin = "{token.user_pin}"\n\n[keys.backends]\ndevice-id = "{where}"\n',
        top_toml=trust(cloud_peers),
        start=False,
    )
    if where == "file":
        cloud_peers.ca.issue_client_cert(REGISTRATION).write(cert_path, key_path)
    else:
        public = _factory_key(where, softhsm.module, token, fresh_swtpm.tcti, gw.data_dir)
        cloud_peers.ca.issue_client_cert(REGISTRATION, public).write(cert_path)
    gw.start()
    device = online(gw, cloud_peers)
    hub = cloud_peers.hubs[0]
    token = module_token(gw, gw.agent, hub.host, device)
    assert hub.verify_module_token(device, AGENT_IDENTITY, token)


def _factory_key(where: str, module: str, token, tcti: str, data_dir: Path) -> object:
    """An EC P-256 key named device-id made on the token or in the TPM before the daemon first
    starts (as a factory would), with the daemon's own backends; its public key."""
    if where == "pkcs11":
        from firmware.keys.pkcs11 import Pkcs11Backend

        backend = Pkcs11Backend(module, token.label, pin=token.user_pin)
    else:
        from firmware.keys.tpm import TpmBackend

        backend = TpmBackend(tcti, data_dir / "tpm-keys")
    try:
        backend.create("device-id", KeyKind.EC_P256)
        return serialization.load_der_public_key(backend.public_key("device-id"))
    finally:
        backend.close()


def _b64(key: bytes | None) -> str | None:
    return None if key is None else base64.b64encode(key).decode()
