"""ModuleSpec parsing from both input shapes, hashing, and field-naming errors."""

from dataclasses import replace

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


def edge_agent_spec(**settings: object) -> dict[str, object]:
    """A module spec as edgeAgent's generated client serialises it (version_2022_08_03
    EdgeletHttpClient.cs ModuleSpec; settings are its CombinedDockerConfig)."""
    return {
        "name": "tempSensor",
        "type": "docker",
        "imagePullPolicy": "On-Create",
        "config": {
            "settings": {"image": "example/sensor:1", "createOptions": {}, **settings},
            "env": [{"key": "MessageCount", "value": "5"}],
        },
    }


@pytest.mark.parametrize(("sent", "policy"), [("On-Create", "on-create"), ("Never", "never")])
def test_pull_policy_in_edge_agents_spelling(sent: str, policy: str) -> None:
    doc = {**edge_agent_spec(), "imagePullPolicy": sent}
    assert ModuleSpec.from_api(doc).pull_policy.value == policy


def test_registry_credentials_are_kept_for_the_store_and_never_answered() -> None:
    auth = {"username": "u", "password": "s3cret", "serveraddress": "registry.example"}
    spec = ModuleSpec.from_api(edge_agent_spec(auth=auth))
    assert spec.registry_auth == auth
    assert "auth" not in spec.to_api()["config"]["settings"]
    assert "s3cret" not in repr(spec)
    stored = spec.to_api(credentials=True)
    assert ModuleSpec.from_api(stored) == spec
    assert spec.spec_hash() == replace(spec, registry_auth=None).spec_hash()


@pytest.mark.parametrize(
    "auth", [["u"], {"username": 1}, {"user": "u"}, {"password": "x" * 10_000}]
)
def test_bad_registry_credentials_name_the_field_not_the_value(auth: object) -> None:
    with pytest.raises(BadRequest) as raised:
        ModuleSpec.from_api(edge_agent_spec(auth=auth))
    assert "config.settings.auth" in raised.value.render()
    assert "x" * 100 not in raised.value.render()


def test_edge_agents_socket_binds_give_way_to_the_runtimes_mount() -> None:
    # CombinedEdgeletConfigProvider.MountSockets binds the workload socket into every module and
    # the management socket into the agent; the runtime mounts the module's own directory there
    options = {
        "HostConfig": {
            "Binds": [
                "/var/lib/aziot/edged/mnt/tempSensor.sock:/var/run/iotedge/workload.sock",
                "/var/run/iotedge/mgmt.sock:/var/run/iotedge/mgmt.sock",
                "/data:/data:ro",
            ]
        }
    }
    spec = ModuleSpec.from_api(edge_agent_spec(createOptions=options))
    assert spec.create_options == {"HostConfig": {"Binds": ["/data:/data:ro"]}}
