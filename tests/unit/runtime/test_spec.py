"""ModuleSpec parsing from both input shapes, hashing, and field-naming errors."""

import pytest

from firmware.errors import BadRequest
from firmware.runtime.spec import HASH_LABEL, OWNER_LABEL, DesiredStatus, ModuleSpec, RestartPolicy

API_DOC = {
    "name": "tempSensor",
    "type": "docker",
    "imagePullPolicy": "never",
    "config": {
        "settings": {"image": "sensor:1", "createOptions": {"HostConfig": {"Privileged": False}}},
        "env": [{"key": "A", "value": "1"}],
    },
}


def test_api_shape_round_trips():
    spec = ModuleSpec.from_api(API_DOC)
    assert spec.image == "sensor:1" and spec.env == {"A": "1"}
    assert ModuleSpec.from_api(spec.to_api()) == spec


def test_manifest_shape_accepts_create_options_as_json_string():
    spec = ModuleSpec.from_manifest(
        "sensor",
        {
            "version": "1.0",
            "type": "docker",
            "status": "stopped",
            "restartPolicy": "on-failure",
            "settings": {"image": "sensor:1", "createOptions": '{"Cmd": ["run"]}'},
            "env": {"LEVEL": {"value": "debug"}},
        },
    )
    assert spec.create_options == {"Cmd": ["run"]}
    assert spec.status is DesiredStatus.STOPPED
    assert spec.restart_policy is RestartPolicy.ON_FAILURE
    assert spec.env == {"LEVEL": "debug"}


def test_hash_changes_with_image_but_not_with_restart_policy():
    spec = ModuleSpec.from_api(API_DOC)
    other_image = ModuleSpec.from_api({**API_DOC, "config": {"settings": {"image": "sensor:2"}}})
    same_but_policy = ModuleSpec.from_api({**API_DOC, "restartPolicy": "never"})
    assert spec.spec_hash() != other_image.spec_hash()
    assert spec.spec_hash() == same_but_policy.spec_hash()
    assert spec.labels()[OWNER_LABEL] == "edgekeeper"
    assert spec.labels()[HASH_LABEL] == spec.spec_hash()


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({**API_DOC, "name": "../etc"}, "'name'"),
        ({**API_DOC, "type": "rkt"}, "'type'"),
        ({**API_DOC, "config": {"settings": {}}}, "'settings.image'"),
        ({**API_DOC, "restartPolicy": "sometimes"}, "'restartPolicy'"),
        (
            {**API_DOC, "config": {"settings": {"image": "x", "createOptions": "{oops"}}},
            "createOptions",
        ),
        (
            {**API_DOC, "config": {"settings": {"image": "x"}, "env": [{"key": 1}]}},
            r"config\.env\[0\]",
        ),
        ([], "'body'"),
    ],
)
def test_errors_name_the_field(doc, field):
    with pytest.raises(BadRequest, match=field):
        ModuleSpec.from_api(doc)


def test_create_options_as_a_deeply_nested_string_are_a_bad_request() -> None:
    deep = "[" * 100_000 + "]" * 100_000
    with pytest.raises(BadRequest, match=r"settings\.createOptions' is nested more than 64"):
        ModuleSpec.from_manifest("m", {"settings": {"image": "i", "createOptions": deep}})
