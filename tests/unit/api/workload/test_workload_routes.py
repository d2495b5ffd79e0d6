"""The workload API through `Router.dispatch`: IoT Edge's paths, fields and statuses."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import itertools
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from firmware.api.workload.ratelimit import RateLimit
from firmware.identity.modules import MASTER_KEY, derivation_label
from firmware.keys.backend import SignAlgorithm
from tests.unit.api.workload.workload_rig import b64, workload_rig


def run(coro):
    return asyncio.run(coro)


def _scoped(module: str) -> str:
    return f"workload:{module}"


def test_sign_answers_the_hmac_of_the_modules_derived_key(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with workload_rig(tmp_path) as rig:
            identity = await rig.identities.create("tempSensor")
            genid = identity.generation_id
            data = b"myhub.azure-devices.net%2Fdevices%2Fdev%2Fmodules%2FtempSensor\n1700000000"
            answer = await rig.sign("tempSensor", genid, data, listener=_scoped("tempSensor"))
            assert answer.status == 200, answer.json()
            digest = base64.b64decode(answer.json()["digest"])
            child = await rig.keys.derive(
                await rig.keys.load(MASTER_KEY), derivation_label("tempSensor", genid)
            )
            assert digest == await rig.keys.sign(child, SignAlgorithm.HMAC_SHA256, data)
            assert len(digest) == hashlib.sha256().digest_size

    run(scenario())


def test_module_socket_may_only_act_as_its_module(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with workload_rig(tmp_path) as rig:
            a = await rig.identities.create("a")
            await rig.identities.create("b")
            answer = await rig.sign("a", a.generation_id, b"x", listener=_scoped("b"))
            assert answer.status == 403
            assert "belongs to module 'b'" in answer.json()["message"]
            for path in ("/modules/a/certificate/identity",):
                answer = await rig.call("POST", path, {}, listener=_scoped("b"))
                assert answer.status == 403

    run(scenario())


def test_wrong_generation_or_unknown_module_is_404(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with workload_rig(tmp_path) as rig:
            a = await rig.identities.create("a")
            b = await rig.identities.create("b")
            answer = await rig.sign("a", b.generation_id, b"x", listener=_scoped("a"))
            assert answer.status == 404
            assert "generation" in answer.json()["message"]
            answer = await rig.sign("ghost", a.generation_id, b"x", listener=_scoped("ghost"))
            assert answer.status == 404

    run(scenario())


def test_encrypt_decrypt_round_trip_and_tamper(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with workload_rig(tmp_path) as rig:
            genid = (await rig.identities.create("m")).generation_id
            base = f"/modules/m/genid/{genid}"
            iv = b64(os.urandom(12))
            sealed = await rig.call(
                "POST",
                f"{base}/encrypt",
                {"plaintext": b64(b"secret twin"), "initializationVector": iv},
                listener=_scoped("m"),
            )
            assert sealed.status == 200, sealed.json()
            ciphertext = sealed.json()["ciphertext"]
            opened = await rig.call(
                "POST",
                f"{base}/decrypt",
                {"ciphertext": ciphertext, "initializationVector": iv},
                listener=_scoped("m"),
            )
            assert opened.status == 200
            assert base64.b64decode(opened.json()["plaintext"]) == b"secret twin"
            raw = bytearray(base64.b64decode(ciphertext))
            raw[0] ^= 1
            tampered = await rig.call(
                "POST",
                f"{base}/decrypt",
                {"ciphertext": b64(bytes(raw)), "initializationVector": iv},
                listener=_scoped("m"),
            )
            assert tampered.status == 400

    run(scenario())


def test_trust_bundle(tmp_path: Path) -> None:
    # The manifest trust bundle: test_manifest_trust_bundle.py.
    async def scenario() -> None:
        async with workload_rig(tmp_path) as rig:
            answer = await rig.call("GET", "/trust-bundle", listener=_scoped("m"))
            assert answer.status == 200
            roots = x509.load_pem_x509_certificates(answer.json()["certificate"].encode())
            assert roots and roots[0].issuer == roots[0].subject

    run(scenario())


def test_server_certificate_chain_sans_and_fresh_key(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with workload_rig(tmp_path, policy={"hostname": "gateway.local"}) as rig:
            genid = (await rig.identities.create("edgeHub")).generation_id
            expiration = (datetime.now(UTC) + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
            path = f"/modules/edgeHub/genid/{genid}/certificate/server"
            body = {"commonName": "gateway.local", "expiration": expiration}
            first = await rig.call("POST", path, body, listener=_scoped("edgeHub"))
            second = await rig.call("POST", path, body, listener=_scoped("edgeHub"))
            assert first.status == 201, first.json()
            doc = first.json()
            assert set(doc) == {"privateKey", "certificate", "expiration"}
            assert doc["privateKey"]["type"] == "key"
            assert doc["privateKey"]["bytes"] != second.json()["privateKey"]["bytes"]
            chain = x509.load_pem_x509_certificates(doc["certificate"].encode())
            leaf = chain[0]
            for child, parent in itertools.pairwise(chain):
                child.verify_directly_issued_by(parent)
            bundle = await rig.call("GET", "/trust-bundle", listener=_scoped("edgeHub"))
            root = x509.load_pem_x509_certificates(bundle.json()["certificate"].encode())[0]
            chain[-1].verify_directly_issued_by(root)
            cn = leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
            assert cn == "gateway.local"
            sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            assert sans.get_values_for_type(x509.DNSName) == ["gateway.local", "edgeHub"]
            usage = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
            assert ExtendedKeyUsageOID.SERVER_AUTH in usage
            key = serialization.load_pem_private_key(
                doc["privateKey"]["bytes"].encode(), password=None
            )
            assert key.public_key().public_numbers() == leaf.public_key().public_numbers()
            assert leaf.not_valid_after_utc <= datetime.now(UTC) + timedelta(days=2)

    run(scenario())


def test_identity_certificate_names_the_module(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with workload_rig(tmp_path) as rig:
            await rig.identities.create("m1")
            answer = await rig.call(
                "POST", "/modules/m1/certificate/identity", listener=_scoped("m1")
            )
            assert answer.status == 201, answer.json()
            leaf = x509.load_pem_x509_certificates(answer.json()["certificate"].encode())[0]
            cn = leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
            assert cn == "m1"
            usage = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
            assert ExtendedKeyUsageOID.CLIENT_AUTH in usage
            unknown = await rig.call(
                "POST", "/modules/m2/certificate/identity", listener=_scoped("m2")
            )
            assert unknown.status == 404

    run(scenario())


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"keyId": "primary", "algo": "HMACSHA256", "data": "!!"}, 400, "data"),
        ({"keyId": "primary", "algo": "HMACSHA512", "data": "AA=="}, 400, "algo"),
        ({"keyId": "tertiary", "algo": "HMACSHA256", "data": "AA=="}, 400, "keyId"),
        ({"algo": "HMACSHA256", "data": "AA=="}, 400, "keyId"),
        ({"keyId": "primary", "algo": "HMACSHA256"}, 400, "data"),
        ({"keyId": "primary", "algo": "HMACSHA256", "data": 5}, 400, "data"),
        ({"keyId": "primary", "algo": "HMACSHA256", "data": "A" * 200000}, 413, "data"),
    ],
)
def test_bad_sign_requests_name_the_field(tmp_path: Path, body, status, field) -> None:
    async def scenario() -> None:
        async with workload_rig(tmp_path) as rig:
            genid = (await rig.identities.create("m")).generation_id
            answer = await rig.call(
                "POST", f"/modules/m/genid/{genid}/sign", body, listener=_scoped("m")
            )
            assert answer.status == status
            assert f"'{field}'" in answer.json()["message"]

    run(scenario())


def test_unknown_api_version_and_bad_json(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with workload_rig(tmp_path) as rig:
            genid = (await rig.identities.create("m")).generation_id
            answer = await rig.sign("m", genid, b"x", listener=_scoped("m"), version="2099-01-01")
            assert answer.status == 400
            assert "api-version" in answer.json()["message"]
            answer = await rig.sign("m", genid, b"x", listener=_scoped("m"), version=None)
            assert answer.status == 400
            answer = await rig.call(
                "POST", f"/modules/m/genid/{genid}/sign", raw=b"{nope", listener=_scoped("m")
            )
            assert answer.status == 400
            assert "JSON" in answer.json()["message"]
            iv = await rig.call(
                "POST",
                f"/modules/m/genid/{genid}/encrypt",
                {"plaintext": "AA==", "initializationVector": b64(b"abc")},
                listener=_scoped("m"),
            )
            assert iv.status == 400
            assert "initializationVector" in iv.json()["message"]

    run(scenario())


def test_workload_routes_are_not_on_the_management_socket(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with workload_rig(tmp_path) as rig:
            answer = await rig.call("GET", "/trust-bundle", listener="mgmt")
            assert answer.status == 404

    run(scenario())


def test_rate_limit_is_per_socket(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with workload_rig(tmp_path, limit=RateLimit(rate=0.001, burst=3)) as rig:
            statuses = [
                (await rig.call("GET", "/trust-bundle", listener=_scoped("greedy"))).status
                for _ in range(5)
            ]
            assert statuses == [200, 200, 200, 429, 429]
            other = await rig.call("GET", "/trust-bundle", listener=_scoped("quiet"))
            assert other.status == 200

    run(scenario())


def test_identities_management_routes(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with workload_rig(tmp_path) as rig:
            created = await rig.call(
                "POST", "/identities", {"moduleId": "m", "managedBy": "me"}, listener="mgmt"
            )
            assert created.status == 200
            doc = created.json()
            assert doc["moduleId"] == "m" and doc["managedBy"] == "me"
            assert doc["authType"] == "sas" and doc["generationId"]
            again = await rig.call("POST", "/identities", {"moduleId": "m"}, listener="mgmt")
            assert again.status == 409
            bad = await rig.call("POST", "/identities", {"moduleId": "a/b"}, listener="mgmt")
            assert bad.status == 400 and "moduleId" in bad.json()["message"]
            listed = await rig.call("GET", "/identities", listener="mgmt")
            assert listed.json() == {"identities": [doc]}
            updated = await rig.call(
                "PUT",
                "/identities/m",
                {"managedBy": "you", "generationId": doc["generationId"]},
                listener="mgmt",
            )
            assert updated.json()["managedBy"] == "you"
            shown = await rig.call("GET", "/identities/m", listener="console")
            assert shown.json()["managedBy"] == "you"
            deleted = await rig.call("DELETE", "/identities/m", listener="mgmt")
            assert deleted.status == 204
            assert (await rig.call("DELETE", "/identities/m", listener="mgmt")).status == 404
            on_workload = await rig.call("GET", "/identities", listener="workload:m")
            assert on_workload.status == 404

    run(scenario())


def test_digest_is_not_the_master_keys_hmac(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with workload_rig(tmp_path) as rig:
            genid = (await rig.identities.create("m")).generation_id
            answer = await rig.sign("m", genid, b"data", listener=_scoped("m"))
            digest = base64.b64decode(answer.json()["digest"])
            master = await rig.keys.load(MASTER_KEY)
            direct = await rig.keys.sign(master, SignAlgorithm.HMAC_SHA256, b"data")
            assert not hmac.compare_digest(digest, direct)

    run(scenario())


def test_secondary_key_is_not_the_primary(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with workload_rig(tmp_path) as rig:
            genid = (await rig.identities.create("m")).generation_id
            digests = {}
            for key_id in ("primary", "secondary"):
                body = {"keyId": key_id, "algo": "HMACSHA256", "data": b64(b"sas")}
                answer = await rig.call(
                    "POST", f"/modules/m/genid/{genid}/sign", body, listener=_scoped("m")
                )
                assert answer.status == 200, answer.json()
                digests[key_id] = answer.json()["digest"]
            assert digests["primary"] != digests["secondary"]

    run(scenario())


@pytest.mark.parametrize(
    ("common_name", "status", "named"),
    [
        ("*.gateway.local", 400, "wildcard"),
        ("10.0.0.1", 400, "IP address"),
        ("gateway.local", 403, "hub_module"),
        ("edgeHub", 403, "module_names"),
        ("tempSensor.evil.example", 403, "module_names"),
    ],
)
def test_server_certificate_for_a_name_not_the_modules_is_refused(
    tmp_path: Path, common_name: str, status: int, named: str
) -> None:
    expiration = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")

    async def scenario() -> None:
        async with workload_rig(tmp_path, policy={"hostname": "gateway.local"}) as rig:
            genid = (await rig.identities.create("tempSensor")).generation_id
            path = f"/modules/tempSensor/genid/{genid}/certificate/server"
            body = {"commonName": common_name, "expiration": expiration}
            answer = await rig.call("POST", path, body, listener=_scoped("tempSensor"))
            assert answer.status == status, answer.json()
            assert named in answer.json()["message"]
            assert repr(common_name) in answer.json()["message"]

    run(scenario())


def test_server_certificate_for_its_own_name_is_capped(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with workload_rig(tmp_path, policy={"server_lifetime": 7200.0}) as rig:
            genid = (await rig.identities.create("tempSensor")).generation_id
            path = f"/modules/tempSensor/genid/{genid}/certificate/server"
            body = {"commonName": "tempSensor", "expiration": "2099-01-01T00:00:00Z"}
            answer = await rig.call("POST", path, body, listener=_scoped("tempSensor"))
            assert answer.status == 201, answer.json()
            leaf = x509.load_pem_x509_certificates(answer.json()["certificate"].encode())[0]
            sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            assert list(sans) == [x509.DNSName("tempSensor")]
            assert leaf.not_valid_after_utc <= datetime.now(UTC) + timedelta(seconds=7200)
            expiration = datetime.fromisoformat(answer.json()["expiration"])
            assert expiration == leaf.not_valid_after_utc

    run(scenario())
