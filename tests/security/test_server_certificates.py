"""Threat: a module gets a server certificate for a name that is not its own (a wildcard, an IP
address, the gateway's host name, another module's name), chained to the root every module and
downstream device trusts, and impersonates edgeHub. Control: `[certificates]` server-name policy
(`firmware/certs/server_names.py`) and lifetimes capped at `server_cert_expiry_days`.

The attacker is a module container calling its own workload socket.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store

pytestmark = pytest.mark.docker

TEN_YEARS = (datetime.now(UTC) + timedelta(days=3650)).strftime("%Y-%m-%dT%H:%M:%SZ")


def generation(running, module: str) -> str:
    """The generation id the module was given (IOTEDGE_MODULEGENERATIONID)."""
    env = running.module_exec(module, "env").stdout.splitlines()
    return next(
        line.split("=", 1)[1] for line in env if line.startswith("IOTEDGE_MODULEGENERATIONID=")
    )


def ask(running, module: str, common_name: str, expiration: str = TEN_YEARS):
    target = f"/modules/{module}/genid/{generation(running, module)}/certificate/server"
    body = {"commonName": common_name, "expiration": expiration}
    return running.workload(module, "POST", target, body)


def verified_names(running, module: str, issued: dict, host: str) -> list[str]:
    """The leaf's DNS SANs, once its chain verifies to the trust bundle for `host`."""
    status, bundle = running.workload(module, "GET", "/trust-bundle")
    assert status == 200
    roots = x509.load_pem_x509_certificates(bundle["certificate"].encode())
    leaf, *chain = x509.load_pem_x509_certificates(issued["certificate"].encode())
    verifier = PolicyBuilder().store(Store(roots)).build_server_verifier(x509.DNSName(host))
    verifier.verify(leaf, chain)
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.IPAddress) == []
    return sans.get_values_for_type(x509.DNSName)


def test_a_module_gets_a_certificate_for_its_own_name_only(gateway, client_image) -> None:
    running = gateway(hostname="gw.local")
    running.deploy("attacker", client_image)
    for name, status, named in (
        ("*.gw.local", 400, "wildcard"),
        ("*", 400, "wildcard"),
        ("10.0.0.1", 400, "IP address"),
        ("::1", 400, "IP address"),
        ("attacker gw", 400, "not a DNS name"),
        ("gw.local", 403, "hub_module"),
        ("GW.LOCAL", 403, "hub_module"),
        ("edgeHub", 403, "module_names"),
        (running.agent, 403, "module_names"),
        ("attacker.evil.example", 403, "module_names"),
    ):
        answer = ask(running, "attacker", name)
        assert answer[0] == status, (name, answer)
        assert repr(name) in answer[1]["message"] and named in answer[1]["message"], answer

    status, issued = ask(running, "attacker", "attacker")
    assert status == 201, issued
    assert verified_names(running, "attacker", issued, "attacker") == ["attacker"]
    # Ten years asked, server_cert_expiry_days (30) given.
    leaf = x509.load_pem_x509_certificates(issued["certificate"].encode())[0]
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc <= timedelta(days=30)
    assert datetime.fromisoformat(issued["expiration"]) == leaf.not_valid_after_utc


def test_the_hub_claims_the_host_name_and_configured_names_are_granted(
    gateway, client_image
) -> None:
    running = gateway(
        '[certificates]\nhub_module = "ekhub"\nserver_cert_expiry_days = 2\n'
        'module_names = { ekopc = ["opc.plant.example"] }\n',
        hostname="gw.local",
    )
    running.deploy("ekhub", client_image)
    running.deploy("ekopc", client_image)

    status, issued = ask(running, "ekhub", "gw.local")
    assert status == 201, issued
    assert verified_names(running, "ekhub", issued, "gw.local") == ["gw.local", "ekhub"]
    leaf = x509.load_pem_x509_certificates(issued["certificate"].encode())[0]
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc == timedelta(days=2)

    status, issued = ask(running, "ekopc", "opc.plant.example")
    assert status == 201, issued
    names = verified_names(running, "ekopc", issued, "opc.plant.example")
    assert names == ["opc.plant.example", "ekopc"]

    # The configured name is ekopc's alone; the host name is the hub's alone.
    status, refused = ask(running, "ekhub", "opc.plant.example")
    assert status == 403 and "module_names" in refused["message"], refused
    status, refused = ask(running, "ekopc", "gw.local")
    assert status == 403 and "hub_module" in refused["message"], refused
