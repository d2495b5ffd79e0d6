"""Renewal with lifetimes of seconds: timers renew before expiry, replace the stored certificate,
and a failed renewal keeps the old certificate and reports degraded until a retry succeeds.

The tests wait on the service's renewal outcomes (`renewed`, `renewal_failed`) within a deadline;
a renewal that does not happen fails them with `TimeoutError`.
"""

from __future__ import annotations

import asyncio

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from firmware.certs.authority import EDGE_CA, ROOT, WORKLOAD_CA
from firmware.certs.errors import CertificateIssueFailed
from firmware.keys.backend import KeyKind
from firmware.store.state import StateStore
from tests.integration.certs.conftest import run

#: Far beyond the renewal times below (1-3 s), so that only a renewal that never comes times out.
DEADLINE = 15.0

SHORT = {
    "quickstart_lifetime": 6.0,
    "workload_ca_lifetime": 3.0,
    "renew_at": 0.5,
    "retry_initial": 0.3,
    "retry_max": 0.6,
}


def stored_serial(device, name):
    record = StateStore(device.root / "certs").get(name)
    return x509.load_pem_x509_certificate(record["certificate"].encode()).serial_number


def test_timer_renews_the_workload_ca_before_it_expires(device):
    async def scenario():
        _keys, certs = await device.boot(**SHORT)
        first = certs.certificate(WORKLOAD_CA)
        async with asyncio.timeout(DEADLINE):
            renewed = await certs.renewed(WORKLOAD_CA, after=first)
        listing = {info.name: info.status for info in await certs.list()}
        issued = await certs.issue_server_certificate("m")
        await certs.stop()
        return first, renewed, listing, issued

    first, renewed, listing, issued = run(scenario())
    assert renewed.serial_number != first.serial_number
    assert renewed.not_valid_after_utc > first.not_valid_after_utc
    assert stored_serial(device, WORKLOAD_CA) == renewed.serial_number
    assert listing[WORKLOAD_CA] == "ok"
    chain = x509.load_pem_x509_certificates(issued.certificate_pem.encode())
    chain[0].verify_directly_issued_by(renewed)


def test_root_renewal_cascades_down_the_chain(device):
    async def scenario():
        _keys, certs = await device.boot(**{**SHORT, "workload_ca_lifetime": 60.0})
        chain = (ROOT, EDGE_CA, WORKLOAD_CA)
        before = {n: certs.certificate(n) for n in chain}
        async with asyncio.timeout(DEADLINE):
            for name in chain:
                await certs.renewed(name, after=before[name])
        after = {n: certs.certificate(n) for n in chain}
        await certs.stop()
        return {n: cert.serial_number for n, cert in before.items()}, after

    first, after = run(scenario())
    for name in (ROOT, EDGE_CA, WORKLOAD_CA):
        assert after[name].serial_number != first[name], name
    after[EDGE_CA].verify_directly_issued_by(after[ROOT])
    after[WORKLOAD_CA].verify_directly_issued_by(after[EDGE_CA])
    assert after[WORKLOAD_CA].not_valid_after_utc <= after[EDGE_CA].not_valid_after_utc


def test_failed_renewal_keeps_the_old_certificate_and_reports_degraded(device):
    async def scenario():
        keys, certs = await device.boot(**SHORT)
        old = certs.certificate(WORKLOAD_CA)
        await keys.delete(await keys.load(WORKLOAD_CA))
        async with asyncio.timeout(DEADLINE):
            failure = await certs.renewal_failed(WORKLOAD_CA, attempts=2)
        kept = certs.certificate(WORKLOAD_CA)
        degraded = dict(certs.degraded)
        attempts = failure.attempts
        listing = {info.name: info.status for info in await certs.list()}
        await certs.stop()
        return old, kept, degraded, attempts, listing

    old, kept, degraded, attempts, listing = run(scenario())
    assert kept.serial_number == old.serial_number
    assert stored_serial(device, WORKLOAD_CA) == old.serial_number
    assert "workload-ca" in degraded[WORKLOAD_CA]
    assert attempts >= 2
    assert listing[WORKLOAD_CA].startswith(("degraded", "expired"))


def test_renewal_recovers_after_failures(device):
    async def scenario():
        keys, certs = await device.boot(**{**SHORT, "workload_ca_lifetime": 2.0})
        old = certs.certificate(WORKLOAD_CA)
        handle = await keys.load(WORKLOAD_CA)
        public = await keys.public_key(handle)
        await keys.delete(handle)
        async with asyncio.timeout(DEADLINE):
            await certs.renewal_failed(WORKLOAD_CA)
        failing = dict(certs.degraded)
        await keys.create_key_pair(WORKLOAD_CA, KeyKind.EC_P256)
        async with asyncio.timeout(DEADLINE):
            current = await certs.renewed(WORKLOAD_CA, after=old)
        healed = dict(certs.degraded)
        await certs.stop()
        return public, failing, healed, current

    public, failing, healed, current = run(scenario())
    assert WORKLOAD_CA in failing
    assert healed == {}
    spki = current.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert spki != public
    assert stored_serial(device, WORKLOAD_CA) == current.serial_number


def test_signature_by_a_key_that_does_not_match_the_issuer_is_refused(device):
    async def scenario():
        keys, certs = await device.boot()
        old = certs.certificate(WORKLOAD_CA)
        await keys.delete(await keys.load(EDGE_CA))
        await keys.create_key_pair(EDGE_CA, KeyKind.EC_P256)
        try:
            await certs.renew(WORKLOAD_CA)
        except CertificateIssueFailed as err:
            failure = err
        kept = certs.certificate(WORKLOAD_CA)
        await certs.stop()
        return old, kept, failure

    old, kept, failure = run(scenario())
    assert "does not verify against its issuer" in failure.message
    assert kept.serial_number == old.serial_number
    assert stored_serial(device, WORKLOAD_CA) == old.serial_number
