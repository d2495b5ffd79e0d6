"""The hub's module identity calls: the requests made, the answers read, each failure mapped to
its identity error, and (fuzzed) nothing else ever raised."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware.identity import hub
from firmware.identity.errors import (
    CloudAnswerMalformed,
    CloudUnauthorized,
    CloudUnreachable,
    IdentityNotFound,
)
from firmware.identity.hub import HubCall, HubModule, ModuleExists
from firmware.identity.rest import CloudRequest

DEVICE, MODULE, TOKEN = "edge 1", "$edgeAgent", "SharedAccessSignature sr=h&sig=s&se=1"
MODULE_PATH = "/devices/edge%201/modules/%24edgeAgent?api-version=2017-11-08-preview"


def module(**fields: object) -> dict[str, object]:
    document: dict[str, object] = {
        "moduleId": MODULE,
        "deviceId": DEVICE,
        "generationId": "637000000000000001",
        "etag": "MQ==",
        "connectionState": "Disconnected",
        "managedBy": "iotEdge",
        "authentication": {
            "symmetricKey": {"primaryKey": "cHJpbWFyeQ==", "secondaryKey": "c2Vjb25k"},
            "type": "sas",
        },
    }
    return {k: v for k, v in (document | fields).items() if v is not None}


def body(document: object) -> bytes:
    return json.dumps(document).encode()


def headers_of(request: CloudRequest) -> dict[str, str]:
    return dict(request.headers)


EXPECTED = HubModule(MODULE, DEVICE, "637000000000000001", "iotEdge", True)


def test_create_is_a_put_of_the_ids_without_if_match() -> None:
    call = hub.create_module(DEVICE, MODULE, TOKEN)
    assert (call.request.method, call.request.target) == ("PUT", MODULE_PATH)
    assert call.request.body is not None
    assert json.loads(call.request.body) == {"moduleId": MODULE, "deviceId": DEVICE}
    assert "if-match" not in headers_of(call.request)
    assert headers_of(call.request)["authorization"] == TOKEN
    assert call.receive(200, {}, body(module())) == EXPECTED
    assert call.receive(409, {}, b'{"Message":"ErrorCode:ModuleAlreadyExistsOnDevice"}') == (
        ModuleExists(MODULE)
    )


def test_set_keys_puts_sas_keys_with_if_match_and_manager() -> None:
    call = hub.set_module_keys(DEVICE, MODULE, b"p" * 32, b"s" * 32, "iotEdge", TOKEN)
    assert (call.request.method, call.request.target) == ("PUT", MODULE_PATH)
    assert headers_of(call.request)["if-match"] == "*"
    assert call.request.body is not None
    assert json.loads(call.request.body) == {
        "moduleId": MODULE,
        "deviceId": DEVICE,
        "authentication": {
            "symmetricKey": {
                "primaryKey": base64.b64encode(b"p" * 32).decode(),
                "secondaryKey": base64.b64encode(b"s" * 32).decode(),
            },
            "type": "sas",
        },
        "managedBy": "iotEdge",
    }
    assert call.receive(200, {}, body(module())) == EXPECTED
    unmanaged = hub.set_module_keys(DEVICE, MODULE, b"p", b"s", None, TOKEN).request.body
    assert unmanaged is not None and "managedBy" not in json.loads(unmanaged)
    with pytest.raises(IdentityNotFound):
        call.receive(404, {}, b"")


def test_get_reads_one_module_and_none_when_absent() -> None:
    call = hub.get_module(DEVICE, MODULE, TOKEN)
    assert (call.request.method, call.request.target, call.request.body) == (
        "GET",
        MODULE_PATH,
        None,
    )
    assert call.receive(200, {}, body(module(managedBy=None, authentication={"type": "none"}))) == (
        HubModule(MODULE, DEVICE, "637000000000000001", None, False)
    )
    assert call.receive(404, {}, b"") is None


def test_list_reads_every_module() -> None:
    call = hub.list_modules(DEVICE, TOKEN)
    assert call.request.target == "/devices/edge%201/modules?api-version=2017-11-08-preview"
    other = module(moduleId="sensor", authentication={"type": "sas", "symmetricKey": {}})
    assert call.receive(200, {}, body([module(), other])) == (
        EXPECTED,
        HubModule("sensor", DEVICE, "637000000000000001", "iotEdge", False),
    )
    assert call.receive(200, {}, b"[]") == ()


def test_delete_has_if_match_and_tells_whether_there_was_one() -> None:
    call = hub.delete_module(DEVICE, MODULE, TOKEN)
    assert (call.request.method, headers_of(call.request)["if-match"]) == ("DELETE", "*")
    assert call.receive(204, {}, b"") is True
    assert call.receive(404, {}, b"") is False


CALLS: list[Callable[[], HubCall[Any]]] = [
    lambda: hub.list_modules(DEVICE, TOKEN),
    lambda: hub.get_module(DEVICE, MODULE, TOKEN),
    lambda: hub.create_module(DEVICE, MODULE, TOKEN),
    lambda: hub.set_module_keys(DEVICE, MODULE, b"p", b"s", None, TOKEN),
    lambda: hub.delete_module(DEVICE, MODULE, TOKEN),
]


@pytest.mark.parametrize("make", CALLS)
@pytest.mark.parametrize("status", [401, 403])
def test_refusals_are_unauthorized_naming_the_device(
    make: Callable[[], HubCall[Any]], status: int
) -> None:
    hub_says = b'{"Message":"ErrorCode:IotHubUnauthorizedAccess;Unauthorized"}'
    with pytest.raises(CloudUnauthorized) as raised:
        make().receive(status, {}, hub_says)
    rendered = raised.value.render()
    assert "'edge 1'" in rendered and "IotHubUnauthorizedAccess" in rendered and "clock" in rendered


@pytest.mark.parametrize("make", [CALLS[0], CALLS[2]])
def test_an_unknown_device_is_unauthorized(make: Callable[[], HubCall[Any]]) -> None:
    with pytest.raises(CloudUnauthorized, match="404"):
        make().receive(404, {}, b'{"Message":"ErrorCode:DeviceNotFound"}')


@pytest.mark.parametrize("make", CALLS)
def test_busy_hub_is_unreachable_with_its_advice(make: Callable[[], HubCall[Any]]) -> None:
    with pytest.raises(CloudUnreachable) as raised:
        make().receive(429, {"retry-after": "60"}, b"")
    assert raised.value.retry_after_s == 60.0
    with pytest.raises(CloudUnreachable):
        make().receive(500, {}, b'{"Message":"boom","networkError":true}')


@pytest.mark.parametrize(
    ("status", "answer", "named"),
    [
        (400, b'{"Message":"ErrorCode:ArgumentInvalid"}', "answered 400"),
        (200, b"<html>", "not valid JSON"),
        (200, body(module(generationId=None)), "without generationId"),
        (200, body(module(deviceId="other")), "of device 'other'"),
        (200, body(module(moduleId="other")), "about module 'other'"),
        (200, body(module(managedBy=7)), "managedBy"),
        (200, body("module"), "not a JSON object"),
    ],
)
def test_what_is_not_the_protocol_is_malformed(status: int, answer: bytes, named: str) -> None:
    with pytest.raises(CloudAnswerMalformed) as raised:
        hub.get_module(DEVICE, MODULE, TOKEN).receive(status, {}, answer)
    assert named in raised.value.message


def test_a_list_that_is_not_an_array_is_malformed() -> None:
    with pytest.raises(CloudAnswerMalformed, match="not a JSON array"):
        hub.list_modules(DEVICE, TOKEN).receive(200, {}, body(module()))


_VALUES = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.text(max_size=12)
    | st.sampled_from([MODULE, DEVICE, "sas"])
)
_DOCUMENTS = st.recursive(
    _VALUES,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "moduleId",
                    "deviceId",
                    "generationId",
                    "managedBy",
                    "authentication",
                    "type",
                    "symmetricKey",
                    "primaryKey",
                    "Message",
                ]
            ),
            inner,
            max_size=6,
        )
    ),
)


@settings(max_examples=400, deadline=None)
@given(
    which=st.integers(0, len(CALLS) - 1),
    status=st.sampled_from([200, 201, 204, 401, 404, 409, 429, 500]) | st.integers(100, 599),
    retry_after=st.text(max_size=8),
    answer=_DOCUMENTS.map(lambda document: json.dumps(document).encode()) | st.binary(max_size=48),
)
def test_receive_only_ever_raises_the_identity_errors(
    which: int, status: int, retry_after: str, answer: bytes
) -> None:
    headers: Mapping[str, str] = {"retry-after": retry_after}
    try:
        result = CALLS[which]().receive(status, headers, answer)
    except (CloudUnauthorized, CloudUnreachable, CloudAnswerMalformed, IdentityNotFound) as error:
        assert error.render()
        return
    if isinstance(result, HubModule):
        assert (result.module_id, result.device_id) == (MODULE, DEVICE) and result.generation_id
    elif isinstance(result, tuple):
        assert all(entry.device_id == DEVICE for entry in result)
    else:
        assert result in (None, True, False, ModuleExists(MODULE))
