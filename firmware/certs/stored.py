"""What a stored CA certificate's record says about it, so that a start can rely on it without
parsing it: its validity, the SHA-256 of its DER, and the SHA-256 of its issuer's DER.

The certificate service writes these facts whenever it issues or checks a certificate. A start
finds every managed certificate with facts that still hold (the PEM is the one the facts were
made for, it has not expired, its issuer is the stored issuer) and then arms the renewal timers
from the facts alone: `cryptography` loads when a certificate is first issued, renewed, listed or
handed out, which also runs the full checks (key, signature) that a start used to run.
"""

from __future__ import annotations

import hashlib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class StoredFacts:
    not_before: float  # POSIX seconds
    not_after: float
    sha256: str  # of the certificate's DER, hex
    issuer_sha256: str  # of the issuer's DER (its own for a self-signed root)

    def fields(self) -> dict[str, Any]:
        return {
            "not_before": self.not_before,
            "not_after": self.not_after,
            "sha256": self.sha256,
            "issuer_sha256": self.issuer_sha256,
        }

    @classmethod
    def of_record(cls, record: Mapping[str, Any]) -> StoredFacts | None:
        """The facts a record holds, or None when it has none (written before they existed) or
        they are malformed."""
        try:
            return cls(
                float(record["not_before"]),
                float(record["not_after"]),
                str(record["sha256"]),
                str(record["issuer_sha256"]),
            )
        except (KeyError, TypeError, ValueError):
            return None


def der_sha256(pem: str) -> str | None:
    """SHA-256 (hex) of the DER in a PEM certificate; None when it is not one."""
    try:
        der = ssl.PEM_cert_to_DER_cert(pem)
    except (ValueError, TypeError):
        return None
    return hashlib.sha256(der).hexdigest()


def facts_hold(
    record: Mapping[str, Any], key_name: str, issuer_sha256: str | None, now: float
) -> StoredFacts | None:
    """The record's facts if they still describe it: made for `key_name`, its PEM unchanged, not
    expired at `now`, issued by the certificate whose DER hashes to `issuer_sha256` (None: it is
    self-signed). None when any of that is not so or cannot be told without parsing."""
    facts = StoredFacts.of_record(record)
    if facts is None or record.get("key") != key_name:
        return None
    if der_sha256(str(record.get("certificate", ""))) != facts.sha256:
        return None
    if facts.not_after <= now:
        return None
    expected_issuer = facts.sha256 if issuer_sha256 is None else issuer_sha256
    return facts if facts.issuer_sha256 == expected_issuer else None
