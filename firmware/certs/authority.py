"""The CA hierarchy the service manages: which certificates exist, who issues them, with what key.

Quickstart: `edge-ca-root` (self-signed) -> `edge-ca` -> `workload-ca`, each key an EC P-256 pair in
the key service (its backend chosen by `[keys.backends]`). Operator-provided: `edge-ca` is the
operator's certificate and key (a PEM file, or `key:NAME` for a key-service key), not renewed by
edgekeeper; `workload-ca` is issued beneath it.
"""

from __future__ import annotations

from dataclasses import dataclass

from firmware.certs.policy import CertificatePolicy

#: The longest X.509 commonName (ub-common-name, RFC 5280).
MAX_COMMON_NAME = 64

ROOT = "edge-ca-root"
EDGE_CA = "edge-ca"
WORKLOAD_CA = "workload-ca"


@dataclass(frozen=True)
class ManagedSpec:
    """One certificate the service keeps: its key, issuer, lifetime and place in the chain."""

    name: str
    common_name: str
    key_name: str | None
    issuer: str | None
    lifetime: float
    path_length: int | None
    renewable: bool = True


def hierarchy(policy: CertificatePolicy) -> list[ManagedSpec]:
    """The managed certificates in issuing order (every issuer before what it issues)."""
    host = policy.hostname
    workload = ManagedSpec(
        WORKLOAD_CA,
        _cn(f"edgekeeper workload CA {host}"),
        WORKLOAD_CA,
        EDGE_CA,
        policy.workload_ca_lifetime,
        0,
    )
    if not policy.quickstart:
        operator = ManagedSpec(EDGE_CA, "", None, None, 0.0, None, renewable=False)
        return [operator, workload]
    root = ManagedSpec(
        ROOT, _cn(f"edgekeeper quickstart root {host}"), ROOT, None, policy.quickstart_lifetime, 2
    )
    edge = ManagedSpec(
        EDGE_CA, _cn(f"edgekeeper Edge CA {host}"), EDGE_CA, ROOT, policy.quickstart_lifetime, 1
    )
    return [root, edge, workload]


def _cn(text: str) -> str:
    return text[:MAX_COMMON_NAME]
