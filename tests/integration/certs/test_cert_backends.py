"""CA keys in every backend: the quickstart chain signed by file, SoftHSM2 and swtpm keys (the TBS
signed through the key service and framed in DER), validated by `cryptography`, and reused after
a restart (and, for the TPM, a power cycle)."""

from __future__ import annotations

from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store

from firmware.certs.authority import EDGE_CA, ROOT, WORKLOAD_CA
from firmware.certs.policy import CertificatePolicy
from firmware.certs.service import CertificateService
from tests.integration.certs.conftest import run


def test_quickstart_chain_with_ca_keys_in_each_backend(key_store, tmp_path):
    policy = CertificatePolicy(directory=tmp_path / "certs", hostname="hw")

    async def boot(restart: bool):
        keys = await (key_store.restart() if restart else key_store.service())
        certs = CertificateService(keys, policy, key_store.executor)
        await certs.start()
        issued = await certs.issue_server_certificate("edgehub", ["edgehub", "127.0.0.1"])
        bundle = await certs.trust_bundle()
        serials = {n: certs.certificate(n).serial_number for n in (ROOT, EDGE_CA, WORKLOAD_CA)}
        backends = {info.name: info.backend for info in await certs.list()}
        await certs.stop()
        return issued, bundle, serials, backends

    issued, bundle, serials, backends = run(boot(restart=False))
    assert set(backends.values()) == {key_store.name}
    leaf, *intermediates = x509.load_pem_x509_certificates(issued.certificate_pem.encode())
    verifier = (
        PolicyBuilder()
        .store(Store(x509.load_pem_x509_certificates(bundle.encode())))
        .build_server_verifier(x509.DNSName("edgehub"))
    )
    assert len(verifier.verify(leaf, intermediates)) == 4

    _issued, bundle_again, serials_again, _ = run(boot(restart=True))
    assert serials_again == serials
    assert bundle_again == bundle
