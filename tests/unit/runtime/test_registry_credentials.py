"""A manifest's registryCredentials, matched to module images as edgeAgent matches them
(edge-agent Docker/DockerUtil.cs FirstAuthConfig, CombinedDockerConfigProvider.cs)."""

from __future__ import annotations

import pytest

from firmware.errors import BadRequest
from firmware.runtime.desired import ModuleChange
from firmware.runtime.manifest import change_details, parse_deployment
from firmware.runtime.registry_credentials import (
    DOCKER_HUB,
    RegistryCredential,
    credential_for,
    registry_of,
)

ACR = RegistryCredential("myacr.azurecr.io", "myacr", "s3cret-acr")
HUB = RegistryCredential(DOCKER_HUB, "me", "s3cret-hub")
LOCAL = RegistryCredential("localhost:5000", "dev", "s3cret-local")


@pytest.mark.parametrize(
    ("image", "registry"),
    [
        ("myacr.azurecr.io/sensor:1", "myacr.azurecr.io"),
        ("localhost:5000/sensor", "localhost:5000"),
        ("company/sensor:2", DOCKER_HUB),
        ("busybox", None),
        ("busybox:1.36", None),
    ],
)
def test_the_registry_of_an_image(image: str, registry: str | None) -> None:
    assert registry_of(image) == registry


def test_the_first_credential_of_the_images_registry_is_used() -> None:
    found = [ACR, HUB, LOCAL]
    assert credential_for("MyAcr.AzureCR.io/sensor:1", found) == ACR
    assert credential_for("company/sensor:2", found) == HUB
    assert credential_for("localhost:5000/x", found) == LOCAL
    assert credential_for("busybox", found) is None
    assert credential_for("other.example/x:1", found) is None


def manifest(credentials: object) -> dict[str, object]:
    return {
        "modulesContent": {
            "$edgeAgent": {
                "properties.desired": {
                    "runtime": {"type": "docker", "settings": {"registryCredentials": credentials}},
                    "modules": {
                        "sensor": {"settings": {"image": "myacr.azurecr.io/sensor:1"}},
                        "public": {"settings": {"image": "busybox"}},
                    },
                }
            }
        }
    }


def test_a_deployment_pulls_each_module_with_its_registrys_credentials() -> None:
    credentials = {"acr": {"address": ACR.address, "username": "myacr", "password": "s3cret-acr"}}
    modules = parse_deployment(manifest(credentials)).modules
    assert modules["sensor"].registry_auth == ACR.auth()
    assert modules["public"].registry_auth is None
    # a changed password is an update (kept in the store) that names no value
    rotated = {"acr": {**credentials["acr"], "password": "s3cret-new"}}
    after = parse_deployment(manifest(rotated)).modules["sensor"]
    change = ModuleChange("sensor", "update", modules["sensor"], after)
    assert change_details(change) == ["registry credentials changed"]
    assert after.spec_hash() == modules["sensor"].spec_hash()  # the container stays


@pytest.mark.parametrize(
    ("credentials", "field"),
    [
        ([], "registryCredentials'"),
        ({"acr": "s3cret"}, "registryCredentials.acr'"),
        ({"acr": {"address": "a", "username": "u"}}, "registryCredentials.acr.password'"),
        ({"acr": {"address": "a", "username": "u", "password": 7}}, "acr.password'"),
    ],
)
def test_bad_credentials_name_the_field_and_no_value(credentials: object, field: str) -> None:
    with pytest.raises(BadRequest) as refused:
        parse_deployment(manifest(credentials))
    rendered = refused.value.render()
    assert "modulesContent.$edgeAgent.properties.desired.runtime.settings." in rendered
    assert field in rendered
    assert "s3cret" not in rendered
