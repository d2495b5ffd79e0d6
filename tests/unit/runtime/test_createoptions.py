"""The shape of createOptions: every field the daemon reads or edits is checked and named, and a
document that passes can go through everything that handles it without an exception."""

from __future__ import annotations

import datetime
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware.api.workload.environment import ModuleMounts, decorate
from firmware.errors import BadRequest
from firmware.runtime.admission import AdmissionPolicy
from firmware.runtime.createoptions import MAX_DEPTH, ShapeProblem, shape_problem
from firmware.runtime.desired import DesiredModules
from firmware.runtime.elevation import find_elevation, protect
from firmware.runtime.reconciler import Reconciler
from firmware.runtime.spec import ModuleSpec
from firmware.store.state import StateStore
from tests.peers.fake_engine import FakeEngine


def nested(depth: int) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for _ in range(depth):
        doc = {"a": doc}
    return doc


@pytest.mark.parametrize(
    ("options", "field", "expected"),
    [
        ([], "", "a JSON object"),
        ({"Labels": []}, "Labels", "an object of strings"),
        ({"Labels": {"a": 1}}, "Labels.a", "a string"),
        ({"Env": "A=1"}, "Env", "a list of strings"),
        ({"Env": ["A=1", None]}, "Env[1]", "a string"),
        ({"Cmd": ["run", 1]}, "Cmd", "a string or a list of strings"),
        ({"Entrypoint": {"x": 1}}, "Entrypoint", "a string or a list of strings"),
        ({"StopTimeout": True}, "StopTimeout", "an integer"),
        ({"User": 0}, "User", "a string"),
        ({"HostConfig": "x"}, "HostConfig", "an object"),
        ({"HostConfig": None}, "HostConfig", "an object"),
        ({"HostConfig": {"Binds": "/a:/b"}}, "HostConfig.Binds", "a list of strings"),
        ({"HostConfig": {"Binds": [["/a", "/b"]]}}, "HostConfig.Binds[0]", "a string"),
        ({"HostConfig": {"Mounts": {}}}, "HostConfig.Mounts", "a list of objects"),
        ({"HostConfig": {"Mounts": ["/a"]}}, "HostConfig.Mounts[0]", "an object"),
        ({"HostConfig": {"Mounts": [{"Source": 1}]}}, "HostConfig.Mounts[0].Source", "a string"),
        (
            {"HostConfig": {"Mounts": [{"VolumeOptions": {"DriverConfig": {"Options": []}}}]}},
            "HostConfig.Mounts[0].VolumeOptions.DriverConfig.Options",
            "an object of strings",
        ),
        ({"HostConfig": {"Privileged": "yes"}}, "HostConfig.Privileged", "true or false"),
        ({"HostConfig": {"CapAdd": "SYS_ADMIN"}}, "HostConfig.CapAdd", "a list of strings"),
        ({"HostConfig": {"PidMode": 1}}, "HostConfig.PidMode", "a string"),
        ({"HostConfig": {"Devices": [1]}}, "HostConfig.Devices[0]", "an object"),
        ({"HostConfig": {"SecurityOpt": [None]}}, "HostConfig.SecurityOpt[0]", "a string"),
        ({"HostConfig": {"MaskedPaths": {}}}, "HostConfig.MaskedPaths", "a list of strings"),
        ({"NetworkingConfig": []}, "NetworkingConfig", "an object"),
        (
            {"NetworkingConfig": {"EndpointsConfig": {"net": "x"}}},
            "NetworkingConfig.EndpointsConfig.net",
            "an object",
        ),
        ({"Anything": float("nan")}, "Anything", "a finite number"),
        ({"Anything": datetime.date(2024, 1, 1)}, "Anything", "a JSON value"),
        ({"Anything": {1: "x"}}, "Anything", "an object with string keys"),
        (nested(MAX_DEPTH + 1), "a." * MAX_DEPTH + "a", f"nested at most {MAX_DEPTH}"),
    ],
)
def test_a_wrong_type_is_named_with_its_field(options: object, field: str, expected: str) -> None:
    problem = shape_problem(options)
    assert isinstance(problem, ShapeProblem)
    assert problem.field == field
    assert expected in problem.expected


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"Cmd": "run", "Entrypoint": ["/bin/sh", "-c"], "Env": None, "Labels": None},
        {"Labels": {"a": "b"}, "Env": ["A=1"], "StopTimeout": 3, "Unknown": {"x": [1, 2.5]}},
        {"HostConfig": {"Binds": None, "Mounts": [{"Type": "tmpfs", "Target": "/t"}]}},
        {"HostConfig": {"PortBindings": {"80/tcp": [{"HostPort": "8080"}]}}},
        {"NetworkingConfig": {"EndpointsConfig": {"azure-iot-edge": {"Aliases": ["a"]}}}},
        nested(MAX_DEPTH),
    ],
)
def test_well_shaped_options_pass(options: dict[str, Any]) -> None:
    assert shape_problem(options) is None


def test_parsing_a_spec_names_the_create_options_field() -> None:
    body = {"name": "m", "config": {"settings": {"image": "x", "createOptions": {"Labels": []}}}}
    with pytest.raises(BadRequest, match=r"'settings\.createOptions\.Labels' must be an object"):
        ModuleSpec.from_api(body)
    manifest = {"settings": {"image": "x", "createOptions": '{"HostConfig": "x"}'}}
    with pytest.raises(BadRequest, match=r"'modules\.m\.settings\.createOptions\.HostConfig'"):
        ModuleSpec.from_manifest("m", manifest)


KEYS = st.sampled_from(
    [
        "Env", "Labels", "Cmd", "Entrypoint", "HostConfig", "Binds", "Mounts", "Type", "Source",
        "Target", "Privileged", "CapAdd", "Capabilities", "PidMode", "IpcMode", "Devices",
        "SecurityOpt", "MaskedPaths", "ReadonlyPaths", "VolumesFrom", "VolumeOptions",
        "DriverConfig", "Options", "NetworkingConfig", "EndpointsConfig", "StopTimeout", "bind",
    ]
)  # fmt: skip
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.sampled_from(["/", "/etc", "/tmp:/t", "bind", "host", "ALL", "seccomp=unconfined"])
    | st.text(max_size=6)
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS | st.text(max_size=3), inner),
    max_leaves=25,
)
OPTIONS = st.dictionaries(KEYS, JSON, max_size=5)
STRICT = AdmissionPolicy(allow_elevated=False, protected=protect(["/etc", "/run/edgekeeper"]))


@settings(max_examples=500, deadline=None)
@given(OPTIONS)
def test_well_shaped_options_go_through_everything_that_handles_them(options):
    """A shape that passes never makes the reconciler, the workload hook, the policy or the
    hash raise; the property that keeps one bad module from stopping supervision."""
    if shape_problem(options) is not None:
        return
    spec = ModuleSpec("m", "img:1", env={"A": "1"}, create_options=options)
    reconciler = Reconciler(FakeEngine(), DesiredModules(StateStore("/nonexistent")))
    body = reconciler._container_body(spec)
    decorate(body, {"IOTEDGE_MODULEID": "m"}, ModuleMounts("/run/edgekeeper/mnt/m"))
    assert body["Image"] == "img:1" and "IOTEDGE_MODULEID=m" in body["Env"]
    assert body["HostConfig"]["Binds"][-1].startswith("/run/edgekeeper/mnt/m:/var/run/iotedge")
    json.dumps(body)
    assert len(spec.spec_hash()) == 32
    find_elevation(options, STRICT.protected)


@settings(max_examples=500, deadline=None)
@given(OPTIONS | JSON)
def test_any_json_create_options_are_admitted_or_refused_with_a_bad_request(options):
    body = {"name": "m", "config": {"settings": {"image": "x", "createOptions": options}}}
    try:
        spec = ModuleSpec.from_api(body)
    except BadRequest as error:
        assert "createOptions" in error.message
        return
    refusal = STRICT.refusal(spec.create_options)
    assert refusal is None or refusal.field_under("settings.createOptions").startswith(
        "settings.createOptions.HostConfig"
    )
