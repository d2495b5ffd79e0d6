"""DPS registration's state machine: the requests it makes, what each answer means, and that
whatever it is fed it only ever raises the identity errors (fuzzed)."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware.identity.dps import (
    Assigned,
    Challenge,
    CloudRequest,
    DpsRegistration,
    Poll,
    SendRegister,
)
from firmware.identity.errors import (
    CloudAnswerMalformed,
    CloudUnauthorized,
    CloudUnreachable,
    ProvisioningRejected,
)

SCOPE, REG = "0ne00ABC123", "edge-7"
TOKEN = "SharedAccessSignature sr=x&sig=y&se=1&skn=registration"
EK, SRK = b"\x01\x3a\x00\x01ek", b"\x01\x3a\x00\x01srk"
AUTH_KEY = b"\x00\x10imported-blob"


def answer(document: object) -> bytes:
    return json.dumps(document).encode()


def assigning(operation_id: str = "4.abc.def") -> bytes:
    return answer({"operationId": operation_id, "status": "assigning"})


def assigned(**state: object) -> bytes:
    state = {
        "registrationId": REG,
        "assignedHub": "hub.azure-devices.net",
        "deviceId": "dev",
    } | state
    return answer({"operationId": "op", "status": "assigned", "registrationState": state})


def registered() -> DpsRegistration:
    """A registration whose register went out with a token."""
    registration = DpsRegistration(SCOPE, REG)
    registration.register(TOKEN)
    return registration


def header(request: CloudRequest, name: str) -> str | None:
    return dict(request.headers).get(name)


def test_register_request_is_a_put_with_the_registration_id_and_the_token() -> None:
    request = DpsRegistration(SCOPE, REG).register(TOKEN)
    assert (request.method, request.target) == (
        "PUT",
        "/0ne00ABC123/registrations/edge-7/register?api-version=2021-06-01",
    )
    assert header(request, "authorization") == TOKEN
    assert header(request, "content-type") == "application/json; charset=utf-8"
    assert request.body is not None and json.loads(request.body) == {"registrationId": REG}


def test_register_carries_tpm_keys_and_payload_and_no_token_when_none() -> None:
    registration = DpsRegistration(
        SCOPE, "a/b", tpm=(EK, SRK), payload={"site": [1, 2]}, api_version="2021-10-01"
    )
    request = registration.register(None)
    assert request.target == "/0ne00ABC123/registrations/a%2Fb/register?api-version=2021-10-01"
    assert header(request, "authorization") is None
    assert request.body is not None and json.loads(request.body) == {
        "registrationId": "a/b",
        "tpm": {
            "endorsementKey": base64.b64encode(EK).decode(),
            "storageRootKey": base64.b64encode(SRK).decode(),
        },
        "payload": {"site": [1, 2]},
    }


def test_assigning_means_poll_after_the_advised_delay() -> None:
    registration = registered()
    event = registration.receive(202, {"retry-after": "3"}, assigning("4.x/y"))
    assert isinstance(event, Poll)
    assert (event.after_s, event.operation_id) == (3.0, "4.x/y")
    assert registration.poll("4.x/y", "fresh") == CloudRequest(
        "GET",
        "/0ne00ABC123/registrations/edge-7/operations/4.x%2Fy?api-version=2021-06-01",
        (("accept", "application/json"), ("authorization", "fresh")),
        None,
    )


@pytest.mark.parametrize(
    ("retry_after", "after_s"),
    [(None, 5.0), ("0", 1.0), ("30", 30.0), ("31", 30.0), ("Wed, 21 Oct 2015 07:28:00 GMT", 5.0)],
)
def test_poll_delay_is_bounded(retry_after: str | None, after_s: float) -> None:
    headers = {} if retry_after is None else {"retry-after": retry_after}
    event = registered().receive(202, headers, assigning())
    assert isinstance(event, Poll) and event.after_s == after_s


def test_assigned_gives_hub_device_substatus_payload_and_tpm_key() -> None:
    event = registered().receive(
        200,
        {},
        assigned(
            substatus="deviceDataMigrated",
            payload={"a": 1},
            tpm={"authenticationKey": base64.b64encode(AUTH_KEY).decode()},
        ),
    )
    assert event == Assigned(
        "hub.azure-devices.net", "dev", "deviceDataMigrated", {"a": 1}, AUTH_KEY
    )


def test_assigned_to_a_hub_with_a_port_and_nothing_optional() -> None:
    event = registered().receive(200, {}, assigned(assignedHub="127.0.0.1:8443"))
    assert event == Assigned("127.0.0.1:8443", "dev", None, None, None)


def test_tpm_challenge_then_a_second_refusal_is_unauthorized() -> None:
    registration = DpsRegistration(SCOPE, REG, tpm=(EK, SRK))
    registration.register(None)
    body = answer(
        {"authenticationKey": base64.b64encode(AUTH_KEY).decode(), "keyName": "registration"}
    )
    assert registration.receive(401, {}, body) == Challenge(AUTH_KEY)
    registration.register(TOKEN)
    with pytest.raises(CloudUnauthorized, match="with its token"):
        registration.receive(401, {}, body)


def test_a_challenge_without_tpm_is_unauthorized() -> None:
    body = answer({"authenticationKey": "AAAA", "keyName": "registration"})
    with pytest.raises(CloudUnauthorized):
        registered().receive(401, {}, body)


@pytest.mark.parametrize(
    "document",
    [
        {"authenticationKey": "AAAA", "keyName": "other"},
        {"authenticationKey": "no!", "keyName": "registration"},
    ],
)
def test_a_broken_challenge_is_malformed(document: object) -> None:
    registration = DpsRegistration(SCOPE, REG, tpm=(EK, SRK))
    registration.register(None)
    with pytest.raises(CloudAnswerMalformed):
        registration.receive(401, {}, answer(document))


@pytest.mark.parametrize("status", [401, 403])
def test_refusals_name_the_registration_the_server_code_and_what_to_check(status: int) -> None:
    body = answer({"errorCode": 401002, "trackingId": "t", "message": "Unauthorized"})
    with pytest.raises(CloudUnauthorized) as raised:
        registered().receive(status, {}, body)
    rendered = raised.value.render()
    for expected in ("'edge-7'", SCOPE, str(status), "errorCode 401002", "Unauthorized", "clock"):
        assert expected in rendered


@pytest.mark.parametrize("status", ["failed", "disabled", "unassigned", "blacklisted"])
def test_finished_without_assignment_is_rejected(status: str) -> None:
    body = answer(
        {
            "operationId": "op",
            "status": status,
            "registrationState": {"errorCode": 400208, "errorMessage": "No hub"},
        }
    )
    with pytest.raises(ProvisioningRejected) as raised:
        registered().receive(200, {}, body)
    assert f"status {status}" in raised.value.message
    assert "errorCode 400208" in raised.value.message and "No hub" in raised.value.message


@pytest.mark.parametrize(
    ("status", "retry_after", "advice"),
    [
        (429, "1000", 300.0),
        (503, "0", 1.0),
        (500, None, None),
        (408, "7", 7.0),
        (503, "soon", None),
    ],
)
def test_transient_answers_are_unreachable_with_bounded_advice(
    status: int, retry_after: str | None, advice: float | None
) -> None:
    headers = {} if retry_after is None else {"retry-after": retry_after}
    with pytest.raises(CloudUnreachable) as raised:
        registered().receive(status, headers, b"")
    assert raised.value.retry_after_s == advice
    assert str(status) in raised.value.message


def test_a_forgotten_operation_means_register_again_but_404_to_register_is_rejected() -> None:
    registration = registered()
    registration.poll("op", TOKEN)
    assert isinstance(registration.receive(404, {}, b""), SendRegister)
    registration.register(TOKEN)
    with pytest.raises(ProvisioningRejected, match="404"):
        registration.receive(404, {}, b"")


@pytest.mark.parametrize(
    ("status", "body", "named"),
    [
        (200, b"<html>portal</html>", "not valid JSON"),
        (200, b"[]", "not a JSON object"),
        (202, answer({"status": "assigning"}), "no operationId"),
        (200, answer({"operationId": "op"}), "no status"),
        (200, answer({"status": "pending"}), "unknown status 'pending'"),
        (200, assigned(assignedHub=None), "no assignedHub"),
        (200, assigned(assignedHub="hub/evil path"), "assignedHub 'hub/evil path'"),
        (200, assigned(deviceId=None), "no deviceId"),
        (200, assigned(deviceId=""), "deviceId ''"),
        (200, assigned(tpm={"authenticationKey": "%%"}), "not base64"),
        (200, answer({"status": "assigned", "registrationState": "x"}), "not an object"),
        (302, b"", "unexpected status 302"),
    ],
)
def test_what_is_not_the_protocol_is_malformed(status: int, body: bytes, named: str) -> None:
    with pytest.raises(CloudAnswerMalformed) as raised:
        registered().receive(status, {}, body)
    assert named in raised.value.message


def test_receive_before_any_request_is_our_mistake() -> None:
    with pytest.raises(RuntimeError):
        DpsRegistration(SCOPE, REG).receive(200, {}, assigned())


# -- fuzz -----------------------------------------------------------------------------------

_NAMES = st.sampled_from(
    [
        "operationId",
        "status",
        "registrationState",
        "assignedHub",
        "deviceId",
        "substatus",
        "payload",
        "tpm",
        "authenticationKey",
        "keyName",
        "errorCode",
        "errorMessage",
        "message",
        "Message",
    ]
)
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.sampled_from(
        ["assigning", "assigned", "failed", "disabled", "registration", "hub.example", "AAAA", ""]
    )
    | st.text(max_size=20)
)
_DOCUMENTS = st.recursive(
    _SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_NAMES, inner, max_size=6)
)
_BODIES = _DOCUMENTS.map(lambda document: json.dumps(document).encode()) | st.binary(max_size=64)
_HEADERS = st.dictionaries(
    st.sampled_from(["retry-after", "x-ms-error-code", "content-type"]),
    st.text(max_size=12) | st.integers(-5, 10**6).map(str),
)
_STATUSES = st.sampled_from([200, 202, 401, 403, 404, 429, 500, 503]) | st.integers(100, 599)
ALLOWED = (CloudUnauthorized, CloudUnreachable, CloudAnswerMalformed, ProvisioningRejected)


@settings(max_examples=600, deadline=None)
@given(
    tpm=st.booleans(),
    steps=st.lists(
        st.tuples(
            st.sampled_from(["register", "register-bare", "poll"]), _STATUSES, _HEADERS, _BODIES
        ),
        min_size=1,
        max_size=4,
    ),
)
def test_receive_only_ever_raises_the_identity_errors(
    tpm: bool, steps: list[tuple[str, int, Mapping[str, str], bytes]]
) -> None:
    registration = DpsRegistration(SCOPE, REG, tpm=(EK, SRK) if tpm else None)
    for sent, status, headers, body in steps:
        if sent == "poll":
            registration.poll("op", TOKEN)
        else:
            registration.register(None if sent == "register-bare" else TOKEN)
        try:
            event = registration.receive(status, headers, body)
        except ALLOWED as error:
            if isinstance(error, CloudUnreachable) and error.retry_after_s is not None:
                assert 1 <= error.retry_after_s <= 300
            assert error.message and error.render()
            continue
        if isinstance(event, Poll):
            assert 1 <= event.after_s <= 30 and event.operation_id
        elif isinstance(event, Challenge):
            assert tpm and sent == "register-bare" and status == 401
        elif isinstance(event, Assigned):
            assert status in (200, 202) and event.hub and event.device_id
        else:
            assert isinstance(event, SendRegister) and sent == "poll" and status == 404
