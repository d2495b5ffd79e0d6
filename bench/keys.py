"""Key service throughput per backend, each beside the same operation done directly, same run.

For every backend (file; pkcs11 on a private SoftHSM2 token; tpm on a private swtpm) this measures
ECDSA-P256 signatures and HMAC-SHA256 per second through `KeyService` (handle verification,
executor hop, backend), through the backend's own method called in-thread, and the same
operation called directly: `cryptography`/`hmac` for file, the raw PKCS#11 C_Sign through our
binding for SoftHSM2, tpm2-pytss ESAPI TPM2_Sign / TPM2_HMAC for swtpm. It prints the rates, the
ratio service/direct, the total overhead, and the part of it the key service itself adds.

    .venv/bin/python bench/keys.py [--seconds 2] [--backends file,pkcs11,tpm] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from firmware.executor import BoundedExecutor  # noqa: E402
from firmware.keys.backend import KeyBackend, KeyKind, SignAlgorithm  # noqa: E402
from firmware.keys.registry import BackendRegistry  # noqa: E402
from firmware.keys.service import KeyService  # noqa: E402

DATA = os.urandom(64)
EC_KEY, MAC_KEY = "bench-ec", "bench-mac"


@dataclass
class Row:
    backend: str
    operation: str
    service_ops: float
    backend_ops: float
    direct_ops: float

    @property
    def ratio(self) -> float:
        return self.service_ops / self.direct_ops

    @property
    def overhead_pct(self) -> float:
        return (self.direct_ops / self.service_ops - 1) * 100

    @property
    def service_overhead_pct(self) -> float:
        """What the key service adds to the backend call (handles, executor hop)."""
        return (self.backend_ops / self.service_ops - 1) * 100


def rate_sync(call: Callable[[], object], seconds: float) -> float:
    call()
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        call()
        count += 1
    return count / elapsed


async def rate_async(call: Callable[[], object], seconds: float) -> float:
    await call()
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        await call()
        count += 1
    return count / elapsed


# --- direct baselines ----------------------------------------------------------------------


Direct = dict[str, Callable[[], object]]


def file_direct(
    workdir: Path, stack: contextlib.ExitStack
) -> tuple[Callable[[], KeyBackend], Callable[[], Direct]]:
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from firmware.keys.file import FileBackend

    private = ec.generate_private_key(ec.SECP256R1())
    secret = os.urandom(32)
    backend = FileBackend(workdir / "keys")
    pkcs8 = private.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    backend.import_key(EC_KEY, KeyKind.EC_P256, pkcs8)
    backend.import_key(MAC_KEY, KeyKind.HMAC_SHA256, secret)
    backend.close()

    def direct() -> Direct:
        return {
            "ecdsa-p256 sign": lambda: private.sign(DATA, ec.ECDSA(hashes.SHA256())),
            "hmac-sha256": lambda: hmac.digest(secret, DATA, "sha256"),
        }

    return (lambda: FileBackend(workdir / "keys")), direct


def pkcs11_direct(
    workdir: Path, stack: contextlib.ExitStack
) -> tuple[Callable[[], KeyBackend], Callable[[], Direct]]:
    from firmware.keys.pkcs11 import Pkcs11Backend
    from firmware.keys.pkcs11.binding import Mechanism, Pkcs11Module, lib
    from tests.peers.sim import SoftHsm

    hsm = SoftHsm(workdir / "softhsm")
    hsm.start()
    stack.callback(hsm.remove)
    os.environ["SOFTHSM2_CONF"] = str(hsm.conf)

    def open_backend() -> KeyBackend:
        return Pkcs11Backend(hsm.module, token_label=hsm.token_label, pin=hsm.user_pin)

    setup = open_backend()
    setup.create(EC_KEY, KeyKind.EC_P256)
    setup.create(MAC_KEY, KeyKind.HMAC_SHA256)
    setup.close()

    def direct() -> Direct:
        module = Pkcs11Module.open(hsm.module)
        token = next(t for t in module.tokens() if t.label == hsm.token_label)
        stack.callback(module.release)
        session = module.open_session(token)
        stack.callback(session.close)
        session.login(hsm.user_pin.encode())

        def key(label: str, cls: int) -> int:
            return session.find({lib.CKA_LABEL: label.encode(), lib.CKA_CLASS: cls})[0]

        ec_key = key(EC_KEY, lib.CKO_PRIVATE_KEY)
        mac_key = key(MAC_KEY, lib.CKO_SECRET_KEY)
        ecdsa, mac = Mechanism(lib.CKM_ECDSA), Mechanism(lib.CKM_SHA256_HMAC)
        return {
            "ecdsa-p256 sign": lambda: session.sign(ec_key, ecdsa, hashlib.sha256(DATA).digest()),
            "hmac-sha256": lambda: session.sign(mac_key, mac, DATA),
        }

    return open_backend, direct


def tpm_direct(
    workdir: Path, stack: contextlib.ExitStack
) -> tuple[Callable[[], KeyBackend], Callable[[], Direct]]:
    from tpm2_pytss import ESAPI
    from tpm2_pytss.constants import TPM2_ALG, TPM2_SU, TPMA_OBJECT
    from tpm2_pytss.types import (
        TPM2B_DIGEST,
        TPM2B_PUBLIC,
        TPM2B_SENSITIVE_CREATE,
        TPMT_SIG_SCHEME,
    )

    from firmware.keys.tpm import TpmBackend
    from tests.peers.sim import Swtpm

    tpm = Swtpm(workdir / "swtpm")
    tpm.start()
    stack.callback(tpm.stop)
    setup = TpmBackend(tpm.tcti, workdir / "tpm-keys")
    setup.create(EC_KEY, KeyKind.EC_P256)
    setup.create(MAC_KEY, KeyKind.HMAC_SHA256)
    setup.close()
    attrs = (
        TPMA_OBJECT.USERWITHAUTH
        | TPMA_OBJECT.SIGN_ENCRYPT
        | TPMA_OBJECT.FIXEDTPM
        | TPMA_OBJECT.FIXEDPARENT
        | TPMA_OBJECT.SENSITIVEDATAORIGIN
    )

    def direct() -> Direct:
        """Primary keys of the same types, used with raw ESAPI calls (after the service ran,
        so its loaded objects have been flushed)."""
        esapi = ESAPI(tpm.tcti)
        stack.callback(esapi.close)
        with contextlib.suppress(Exception):
            esapi.startup(TPM2_SU.CLEAR)
        ec_handle = esapi.create_primary(
            TPM2B_SENSITIVE_CREATE(),
            TPM2B_PUBLIC.parse("ecc256:ecdsa-sha256", objectAttributes=attrs),
        )[0]
        mac_handle = esapi.create_primary(
            TPM2B_SENSITIVE_CREATE(), TPM2B_PUBLIC.parse("hmac:sha256", objectAttributes=attrs)
        )[0]
        scheme = TPMT_SIG_SCHEME(scheme=TPM2_ALG.ECDSA)
        scheme.details.any.hashAlg = TPM2_ALG.SHA256
        return {
            "ecdsa-p256 sign": lambda: esapi.sign(
                ec_handle, TPM2B_DIGEST(hashlib.sha256(DATA).digest()), scheme
            ),
            "hmac-sha256": lambda: esapi.hmac(mac_handle, DATA, TPM2_ALG.SHA256),
        }

    return (lambda: TpmBackend(tpm.tcti, workdir / "tpm-keys")), direct


BASELINES = {"file": file_direct, "pkcs11": pkcs11_direct, "tpm": tpm_direct}


async def through_service(
    name: str, open_backend: Callable[[], KeyBackend], seconds: float
) -> tuple[dict[str, float], dict[str, float]]:
    """Rates through the service, and of the same backend's methods called in this thread."""
    executor = BoundedExecutor()
    backend = open_backend()
    service = KeyService(BackendRegistry(name, {name: lambda: backend}), executor)
    try:
        await service.start()
        ec_handle = await service.load(EC_KEY)
        mac_handle = await service.load(MAC_KEY)
        served = {
            "ecdsa-p256 sign": await rate_async(
                lambda: service.sign(ec_handle, SignAlgorithm.ECDSA_SHA256, DATA), seconds
            ),
            "hmac-sha256": await rate_async(
                lambda: service.sign(mac_handle, SignAlgorithm.HMAC_SHA256, DATA), seconds
            ),
        }
        called = {
            "ecdsa-p256 sign": rate_sync(
                lambda: backend.sign(EC_KEY, SignAlgorithm.ECDSA_SHA256, DATA), seconds
            ),
            "hmac-sha256": rate_sync(
                lambda: backend.sign(MAC_KEY, SignAlgorithm.HMAC_SHA256, DATA), seconds
            ),
        }
        return served, called
    finally:
        await service.close()
        executor.shutdown()


def bench(backend: str, seconds: float) -> list[Row]:
    with (
        tempfile.TemporaryDirectory(prefix=f"bench-keys-{backend}-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        open_backend, make_direct = BASELINES[backend](Path(tmp), stack)
        served, called = asyncio.run(through_service(backend, open_backend, seconds))
        return [
            Row(backend, operation, served[operation], called[operation], rate_sync(call, seconds))
            for operation, call in make_direct().items()
        ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="measuring time per figure")
    parser.add_argument("--backends", default="file,pkcs11,tpm", help="comma-separated")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON")
    args = parser.parse_args()
    rows: list[Row] = []
    for backend in args.backends.split(","):
        try:
            rows += bench(backend, args.seconds)
        except Exception as err:  # a backend that cannot run is reported, the others still run
            print(f"{backend}: not measured: {type(err).__name__}: {err}", file=sys.stderr)
    print(
        f"{'backend':8} {'operation':16} {'service/s':>10} {'backend/s':>10} {'direct/s':>10} "
        f"{'ratio':>6} {'overhead':>9} {'service part':>12}"
    )
    for row in rows:
        print(
            f"{row.backend:8} {row.operation:16} {row.service_ops:10.0f} {row.backend_ops:10.0f} "
            f"{row.direct_ops:10.0f} {row.ratio:6.2f} {row.overhead_pct:8.1f}% "
            f"{row.service_overhead_pct:11.1f}%"
        )
    if args.json:
        args.json.write_text(
            json.dumps([{**asdict(r), "ratio": r.ratio} for r in rows], indent=2) + "\n"
        )
    return 0 if rows else 1


if __name__ == "__main__":
    sys.exit(main())
