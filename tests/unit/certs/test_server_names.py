"""The server-name policy: a module claims its own name, its configured names, and the gateway's
host name only as the hub; wildcards, IP addresses and non-DNS text are malformed. The module id
as a SAN on every certificate: test_module_id_san.py."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware.certs.errors import InvalidCertificateRequest, ServerNameRefused
from firmware.certs.server_names import ServerNamePolicy, checked_dns_name
from firmware.errors import BadRequest, Forbidden

POLICY = ServerNamePolicy(
    hostname="gw.local",
    hub_module="edgeHub",
    module_names={"opcua": ("opcua.plant.example", "OPC.local"), "web": ("gw.local",)},
)


def test_own_name_is_allowed_and_joins_the_sans() -> None:
    assert POLICY.allowed("tempSensor") == ("tempsensor",)
    assert POLICY.subject_names("tempSensor", "tempSensor") == ("tempSensor",)
    assert POLICY.subject_names("tempSensor", "TEMPSENSOR") == ("TEMPSENSOR",)


def test_configured_names_are_allowed_for_their_module_only() -> None:
    assert POLICY.subject_names("opcua", "opc.local") == ("opc.local", "opcua")
    assert POLICY.subject_names("opcua", "opcua.plant.example") == ("opcua.plant.example", "opcua")
    with pytest.raises(ServerNameRefused, match="module_names"):
        POLICY.subject_names("tempSensor", "opcua.plant.example")


def test_only_the_hub_claims_the_host_name() -> None:
    assert POLICY.subject_names("edgeHub", "gw.local") == ("gw.local", "edgeHub")
    assert POLICY.subject_names("$edgeHub", "GW.LOCAL") == ("GW.LOCAL", "edgeHub")
    with pytest.raises(ServerNameRefused, match="hub_module") as refused:
        POLICY.subject_names("tempSensor", "gw.local")
    assert refused.value.http_status == 403
    assert "'gw.local'" in refused.value.message


def test_operator_may_give_the_host_name_to_another_module() -> None:
    assert POLICY.subject_names("web", "gw.local") == ("gw.local", "web")


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("tempSensor", "edgeHub"),  # another module's name
        ("tempSensor", "tempSensor.gw.local"),  # a subdomain is another name
        ("tempSensor", "example.com"),
        ("opcua", "opcua.plant.example.evil"),
    ],
)
def test_names_of_others_are_refused(module: str, name: str) -> None:
    with pytest.raises(ServerNameRefused, match=f"may not claim {name!r}") as refused:
        POLICY.subject_names(module, name)
    assert isinstance(refused.value, Forbidden)


def test_an_own_name_someone_else_owns_gets_no_certificate() -> None:
    # "gateway" is the host name, "opc" configured for another module: every certificate of
    # theirs would carry it, so they get none, not even for a name configured for them.
    policy = ServerNamePolicy(
        "gateway", module_names={"opcua": ("opc",), "opc": ("opc.plant.example",)}
    )
    with pytest.raises(ServerNameRefused, match="host name"):
        policy.subject_names("gateway", "gateway")
    with pytest.raises(ServerNameRefused, match="lists for module 'opcua'"):
        policy.subject_names("opc", "opc.plant.example")


def test_modules_without_a_dns_label_name_claim_only_configured_names() -> None:
    policy = ServerNamePolicy("gw.local", module_names={"temp_sensor": ("temp-sensor",)})
    assert policy.allowed("temp_sensor") == ("temp-sensor",)
    assert policy.allowed("a.b") == ()
    with pytest.raises(InvalidCertificateRequest):
        policy.subject_names("temp_sensor", "temp_sensor")


@pytest.mark.parametrize(
    "name",
    [
        "*.gw.local",
        "*",
        "tempSensor*",
        "10.0.0.1",
        "::1",
        "010.0.0.1",
        "1.2.3.999",
        "temp sensor",
        "tempSensor.",
        ".tempSensor",
        "-tempSensor",
        "temp_sensor",
        "tem\u212aSensor",  # KELVIN SIGN lowers to "k"
        "a" * 64,
        "x\n",
        "",
    ],
)
def test_malformed_names_are_bad_requests(name: str) -> None:
    with pytest.raises(InvalidCertificateRequest, match="server name") as refused:
        POLICY.subject_names("tempSensor", name)
    assert isinstance(refused.value, BadRequest)


@given(st.text(max_size=80))
def test_any_text_is_refused_or_an_allowed_name(name: str) -> None:
    try:
        names = POLICY.subject_names("tempSensor", name)
    except (InvalidCertificateRequest, ServerNameRefused):
        return
    assert names == (name,)
    assert checked_dns_name(name) == "tempsensor"
