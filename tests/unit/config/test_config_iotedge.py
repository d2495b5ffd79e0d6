"""An existing Azure IoT Edge 1.4/1.5 `config.toml` mostly loads; what does not is named."""

from __future__ import annotations

from firmware.config import load_config, validate_files

# Shaped like `iotedge config` output for a DPS + symmetric key device (values made up).
IOTEDGE_CONFIG = """\
hostname = "edge-gw-17"
parent_hostname = "edge-parent"
trust_bundle_cert = "file:///var/secrets/trust-bundle.pem"
auto_reprovisioning_mode = "AlwaysOnStartup"
allow_elevated_docker_permissions = false

[provisioning]
source = "dps"
global_endpoint = "https://global.azure-devices-provisioning.net"
id_scope = "0ab1234C5D6"

[provisioning.attestation]
method = "symmetric_key"
registration_id = "edge-gw-17"
symmetric_key = { value = "YXppb3QtaWRlbnRpdHktc2VydmljZXxhemlvdC1pZGU=" }

[agent]
name = "edgeAgent"
type = "docker"
imagePullPolicy = "never"

[agent.config]
image = "mcr.microsoft.com/azureiotedge-agent:1.5"
createOptions = { HostConfig = { Binds = ["/iotedge/storage:/iotedge/storage"] } }

[agent.config.auth]
serveraddress = "example.azurecr.io"
username = "username"
password = "password"

[agent.env]
"RuntimeLogLevel" = "debug"
"UpstreamProtocol" = "AmqpWs"

[connect]
workload_uri = "unix:///var/run/iotedge/workload.sock"
management_uri = "unix:///var/run/iotedge/mgmt.sock"

[listen]
workload_uri = "fd://aziot-edged.workload.socket"
management_uri = "fd://aziot-edged.mgmt.socket"
min_tls_version = "tls1.2"

[watchdog]
max_retries = "infinite"

[edge_ca]
auto_generated_edge_ca_expiry_days = 90

[moby_runtime]
uri = "unix:///var/run/docker.sock"
network = "azure-iot-edge"

[image_garbage_collection]
enabled = true
cleanup_recurrence = "1d"
image_age_cleanup_threshold = "7d"
cleanup_time = "00:00"

[tpm]
tcti = "device:/dev/tpmrm0"
"""

MANUAL_SAS = """\
[provisioning]
source = "manual"
iothub_hostname = "example.azure-devices.net"
device_id = "my-device"

[provisioning.authentication]
method = "sas"
device_id_pk = { uri = "file:///var/secrets/device-id.key" }

[edge_ca]
cert = "file:///var/secrets/edge-ca.pem"
pk = "file:///var/secrets/edge-ca.key.pem"
"""


def test_an_iotedge_dps_config_loads_unchanged(write) -> None:
    config = load_config(write("config.toml", IOTEDGE_CONFIG))
    assert config.hostname == "edge-gw-17"
    assert config.parent_hostname == "edge-parent"
    assert config.auto_reprovisioning_mode == "AlwaysOnStartup"
    assert config.provisioning.attestation.registration_id == "edge-gw-17"
    assert config.provisioning.attestation.symmetric_key.value.startswith("YXppb3Qt")
    assert config.agent.image_pull_policy == "never"
    assert config.agent.config.create_options["HostConfig"]["Binds"] == [
        "/iotedge/storage:/iotedge/storage"
    ]
    assert config.agent.config.auth.serveraddress == "example.azurecr.io"
    assert config.agent.env["UpstreamProtocol"] == "AmqpWs"
    assert config.listen.management_uri == "fd://aziot-edged.mgmt.socket"
    assert config.connect.workload_uri == "unix:///var/run/iotedge/workload.sock"
    assert config.runtime.network == "azure-iot-edge"
    assert config.edge_ca.auto_generated_expiry_days == 90
    assert config.image_garbage_collection.cleanup_recurrence == "1d"


def test_an_iotedge_manual_config_loads_unchanged(write) -> None:
    config = load_config(write("config.toml", MANUAL_SAS))
    assert (
        config.provisioning.authentication.device_id_pk.uri == "file:///var/secrets/device-id.key"
    )
    assert config.edge_ca.pk == "file:///var/secrets/edge-ca.key.pem"


def test_unsupported_iotedge_keys_are_named_with_what_to_do(write) -> None:
    text = IOTEDGE_CONFIG + (
        "\n[aziot_keys]\n"
        'pkcs11_lib_path = "/usr/lib/libmypkcs11.so"\n'
        'pkcs11_base_slot = "pkcs11:slot-id=0?pin-value=1234"\n'
        "\n[cert_issuance.est]\n"
        'trusted_certs = ["file:///var/secrets/est-id-ca.pem"]\n'
        "\n[edge_ca.auto_renew]\n"
        "rotate_key = true\n"
    )
    path = write("config.toml", text)
    problems = validate_files(path).problems
    found = {p.key: p for p in problems}
    assert set(found) == {
        "aziot_keys.pkcs11_base_slot",
        "keys.pkcs11.token_label",  # pkcs11_lib_path mapped to keys.pkcs11.module, which needs it
        "cert_issuance",
        "edge_ca.auto_renew",
    }
    base_slot = found["aziot_keys.pkcs11_base_slot"]
    assert base_slot.message == "is an IoT Edge setting edgekeeper does not support"
    assert base_slot.hint == "set [keys.pkcs11] token_label or slot, and pin_file"
    assert base_slot.line == text.splitlines().index("[aziot_keys]") + 3
    assert found["cert_issuance"].hint.startswith("EST and local-CA issuance are not supported")
