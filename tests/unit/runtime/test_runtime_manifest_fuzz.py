"""Any JSON document given as a deployment or a module body ends in a spec or a BadRequest."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from firmware.errors import BadRequest
from firmware.runtime.manifest import parse_deployment
from firmware.runtime.spec import ModuleSpec

KEYS = st.sampled_from(
    [
        "modules", "systemModules", "modulesContent", "$edgeAgent", "properties.desired",
        "properties", "desired", "settings", "image", "createOptions", "env", "value", "name",
        "config", "status", "restartPolicy", "imagePullPolicy", "version", "type", "key", "m",
    ]
)  # fmt: skip
SCALARS = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
)
JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(KEYS | st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(JSON)
def test_deployments_parse_or_say_why(doc):
    try:
        parse_deployment(doc)
    except BadRequest as error:
        assert error.message


@settings(max_examples=400, deadline=None)
@given(JSON)
def test_module_bodies_parse_or_say_why(doc):
    try:
        ModuleSpec.from_api(doc)
    except BadRequest as error:
        assert error.message
