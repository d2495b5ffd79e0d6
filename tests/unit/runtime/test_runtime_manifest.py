"""Deployment manifests in IoT Edge's and our shapes, their errors, and diff details."""

from __future__ import annotations

import json

import pytest

from firmware.errors import BadRequest
from firmware.runtime.desired import diff
from firmware.runtime.manifest import change_details, change_document, parse_deployment
from firmware.runtime.spec import ModuleSpec

MODULE = {
    "version": "1.0",
    "type": "docker",
    "status": "running",
    "restartPolicy": "on-failure",
    "settings": {"image": "example/sensor:1", "createOptions": json.dumps({"Cmd": ["run"]})},
    "env": {"RATE": {"value": "5"}},
}


def test_iot_edge_manifest_with_dotted_desired_key():
    doc = {
        "modulesContent": {
            "$edgeAgent": {
                "properties.desired": {
                    "systemModules": {
                        "edgeAgent": {"settings": {"image": "agent"}},
                        "edgeHub": {"settings": {"image": "hub:1"}},
                    },
                    "modules": {"sensor": MODULE},
                }
            },
            "$edgeHub": {"properties.desired": {"routes": {}}},
        }
    }
    deployment = parse_deployment(doc)
    assert sorted(deployment.modules) == ["edgeHub", "sensor"]
    sensor = deployment.modules["sensor"]
    assert sensor.create_options == {"Cmd": ["run"]}
    assert sensor.env == {"RATE": "5"}
    assert sensor.restart_policy.value == "on-failure"
    assert deployment.skipped == (
        "modulesContent.$edgeAgent.properties.desired.systemModules.edgeAgent",
    )


def test_nested_properties_and_plain_modules_and_toml_values():
    nested = {"modulesContent": {"$edgeAgent": {"properties": {"desired": {"modules": {}}}}}}
    assert parse_deployment(nested).modules == {}
    plain = {"modules": {"a": {"settings": {"image": "x"}, "env": {"N": 3, "B": True}}}}
    assert parse_deployment(plain).modules["a"].env == {"N": "3", "B": "true"}


def test_the_configured_agent_name_is_skipped_too():
    doc = {"modules": {"myAgent": {"settings": {"image": "x"}}}}
    assert parse_deployment(doc, agent_name="myAgent").modules == {}


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({"modules": {"a": {"settings": {}}}}, "modules.a.settings.image"),
        ({"modules": {"a": {"settings": {"image": "x", "createOptions": "{"}}}}, "createOptions"),
        ({"modules": {"a": {"settings": {"image": "x"}, "status": "up"}}}, "modules.a.status"),
        ({"modules": []}, "modules"),
        ({"mods": {}}, "modules"),
        ({"modulesContent": {"$edgeAgent": {}}}, "properties.desired"),
        (
            {"modulesContent": {"$edgeAgent": {"properties.desired": {"modules": {"a": 1}}}}},
            "modulesContent.$edgeAgent.properties.desired.modules.a",
        ),
    ],
)
def test_errors_name_the_field(doc, field):
    with pytest.raises(BadRequest) as caught:
        parse_deployment(doc)
    assert field in caught.value.message


def test_change_details_say_what_changed():
    before = ModuleSpec.from_manifest("s", MODULE)
    changed = json.loads(json.dumps(MODULE))
    changed["settings"]["image"] = "example/sensor:2"
    changed["env"] = {"RATE": {"value": "6"}, "MODE": {"value": "x"}}
    changed["status"] = "stopped"
    after = ModuleSpec.from_manifest("s", changed)
    [change] = diff({"s": before}, {"s": after})
    assert change_details(change) == [
        "image: example/sensor:1 -> example/sensor:2",
        "status: running -> stopped",
        "env: +MODE ~RATE",
    ]
    document = change_document(change)
    assert document["recreate"] is True and document["change"] == "update"
    status_only = ModuleSpec(**{**before.__dict__, "status": after.status})
    [change] = diff({"s": before}, {"s": status_only})
    assert change_document(change)["recreate"] is False
