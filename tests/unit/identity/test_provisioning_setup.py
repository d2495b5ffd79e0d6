"""What `[provisioning]` turns into before any cloud call: `Config.reprovisioning_mode()` maps
IoT Edge 1.1's keys as its importer does, and `provisioning_setup` refuses a piece of
configuration it cannot use with a `ConfigError` naming the field (and nothing half built)."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from firmware.config import load_config
from firmware.config.schema import Config
from firmware.errors import ConfigError
from firmware.executor import BoundedExecutor
from firmware.identity.setup import LocalSource, provisioning_setup
from firmware.keys.file import FileBackend
from firmware.keys.registry import BackendRegistry
from firmware.keys.service import KeyService

DPS = '[provisioning]\nsource = "dps"\nid_scope = "0ne00000001"\n'
SYMMETRIC = '\n[provisioning.attestation]\nmethod = "symmetric_key"\nregistration_id = "gw"\n'
KEY = 'symmetric_key = { value = "c2VjcmV0LWtleS1zZWNyZXQta2V5LXNlY3JldC1rZXk=" }\n'


@pytest.fixture(autouse=True)
def no_board(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EDGEKEEPER_BOARD", raising=False)


def config(tmp_path: Path, text: str) -> Config:
    path = tmp_path / "config.toml"
    path.write_text(f'hostname = "gw.local"\n\n{text}')
    path.chmod(0o600)
    return load_config(path)


# the IoT Edge 1.1 keys


@pytest.mark.parametrize(
    ("old_keys", "mode"),
    [
        ("", "AlwaysOnStartup"),  # none given: auto_reprovisioning_mode stands
        ("dynamic_reprovisioning = true\n", "Dynamic"),
        ("dynamic_reprovisioning = true\nalways_reprovision_on_startup = true\n", "Dynamic"),
        ("always_reprovision_on_startup = true\n", "AlwaysOnStartup"),
        (
            "always_reprovision_on_startup = true\ndynamic_reprovisioning = false\n",
            "AlwaysOnStartup",
        ),
        ("always_reprovision_on_startup = false\n", "OnErrorOnly"),
        ("dynamic_reprovisioning = false\n", "OnErrorOnly"),
    ],
)
def test_the_1_1_keys_map_as_iotedge_imports_them(tmp_path: Path, old_keys: str, mode) -> None:
    loaded = config(
        tmp_path,
        'auto_reprovisioning_mode = "AlwaysOnStartup"\n\n' + DPS + old_keys + SYMMETRIC + KEY,
    )
    assert loaded.reprovisioning_mode() == mode


def test_without_any_key_the_mode_is_dynamic(tmp_path: Path) -> None:
    assert config(tmp_path, DPS + SYMMETRIC + KEY).reprovisioning_mode() == "Dynamic"


# provisioning_setup refusing what it cannot use


class Device:
    """A key service in files and the executor, as the identity service has them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.executor = BoundedExecutor()

    async def setup(self, loaded: Config):
        registry = BackendRegistry("file", {"file": lambda: FileBackend(self.root / "keys")})
        service = KeyService(registry, self.executor)
        await service.start()
        refused: list[object] = []
        return await provisioning_setup(loaded, service, self.executor.run, refused.append)


@pytest.fixture
def device(tmp_path: Path):
    made = Device(tmp_path)
    yield made
    made.executor.shutdown()


async def refusal(device: Device, loaded: Config) -> ConfigError:
    with pytest.raises(ConfigError) as refused:
        await device.setup(loaded)
    return refused.value


async def test_a_missing_symmetric_key_file_is_named(device, tmp_path: Path) -> None:
    missing = tmp_path / "absent.key"
    loaded = config(tmp_path, DPS + SYMMETRIC + f'symmetric_key = {{ uri = "file://{missing}" }}\n')
    error = await refusal(device, loaded)
    assert "[provisioning.attestation] symmetric_key" in error.message
    assert str(missing) in error.message
    assert "path" in (error.hint or "")


async def test_an_empty_symmetric_key_file_is_named(device, tmp_path: Path) -> None:
    empty = tmp_path / "empty.key"
    empty.write_bytes(b"")
    loaded = config(tmp_path, DPS + SYMMETRIC + f'symmetric_key = {{ uri = "file://{empty}" }}\n')
    error = await refusal(device, loaded)
    assert "[provisioning.attestation] symmetric_key" in error.message
    assert "empty" in error.message


async def test_a_pkcs11_uri_without_an_object_is_named(device, tmp_path: Path) -> None:
    loaded = config(
        tmp_path, DPS + SYMMETRIC + 'symmetric_key = { uri = "pkcs11:token=edge;pin-value=1234" }\n'
    )
    error = await refusal(device, loaded)
    assert "[provisioning.attestation] symmetric_key" in error.message
    assert "object" in error.message and "object=" in (error.hint or "")
    assert "1234" not in error.render()


async def test_a_manual_device_key_uri_without_an_object_is_named(device, tmp_path: Path) -> None:
    loaded = config(
        tmp_path,
        '[provisioning]\nsource = "manual"\niothub_hostname = "hub.example"\n'
        'device_id = "gw"\n\n[provisioning.authentication]\nmethod = "sas"\n'
        'device_id_pk = { uri = "pkcs11:token=edge" }\n',
    )
    error = await refusal(device, loaded)
    assert "[provisioning.authentication] device_id_pk" in error.message


@pytest.mark.parametrize("content", [None, b"{not json"], ids=["missing", "not-json"])
async def test_an_unreadable_payload_file_is_named(device, tmp_path: Path, content) -> None:
    payload = tmp_path / "payload.json"
    if content is not None:
        payload.write_bytes(content)
    loaded = config(tmp_path, DPS + f'payload = {{ uri = "file://{payload}" }}\n' + SYMMETRIC + KEY)
    error = await refusal(device, loaded)
    assert "[provisioning] payload" in error.message
    assert str(payload) in error.message
    assert "JSON" in (error.hint or "")


def _certificate_without_cn(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "factory")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "device.pem", tmp_path / "device.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


async def test_an_identity_cert_without_cn_needs_a_registration_id(device, tmp_path: Path) -> None:
    cert_path, key_path = _certificate_without_cn(tmp_path)
    attestation = (
        '\n[provisioning.attestation]\nmethod = "x509"\n'
        f'identity_cert = "file://{cert_path}"\nidentity_pk = "file://{key_path}"\n'
    )
    error = await refusal(device, config(tmp_path, DPS + attestation))
    assert "identity_cert" in error.message and str(cert_path) in error.message
    assert "common name" in error.message
    assert "registration_id" in (error.hint or "")
    # with a registration id the same certificate is fine
    named = await device.setup(config(tmp_path, DPS + attestation + 'registration_id = "gw"\n'))
    named.close()


async def test_an_identity_cert_that_is_not_pem_is_named(device, tmp_path: Path) -> None:
    _, key_path = _certificate_without_cn(tmp_path)
    cert_path = tmp_path / "device.pem"
    cert_path.write_text("not a certificate\n")
    attestation = (
        '\n[provisioning.attestation]\nmethod = "x509"\n'
        f'identity_cert = "file://{cert_path}"\nidentity_pk = "file://{key_path}"\n'
        'registration_id = "gw"\n'
    )
    error = await refusal(device, config(tmp_path, DPS + attestation))
    assert "[provisioning.attestation] identity_cert" in error.message


async def test_an_unreadable_trust_bundle_is_named(device, tmp_path: Path) -> None:
    bundle = tmp_path / "absent-ca.pem"
    loaded = config(tmp_path, f'trust_bundle_cert = "file://{bundle}"\n\n' + DPS + SYMMETRIC + KEY)
    error = await refusal(device, loaded)
    assert "trust_bundle_cert" in error.message and str(bundle) in error.message


async def test_source_none_needs_no_cloud_and_no_key(device, tmp_path: Path) -> None:
    setup = await device.setup(config(tmp_path, '[provisioning]\nsource = "none"\n'))
    assert isinstance(setup.source, LocalSource) and setup.modules is None
    local = await setup.source.obtain()
    assert (local.hub, local.device_id) == ("", "gw.local")
