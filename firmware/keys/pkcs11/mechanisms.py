"""Which PKCS#11 mechanisms each key kind and signature algorithm uses, and what a token offers."""

from __future__ import annotations

from firmware.keys.backend import KeyKind, SignAlgorithm
from firmware.keys.pkcs11.binding import Mechanism, lib, rsa_pss_sha256

MECHANISM_NAMES: dict[int, str] = {
    lib.CKM_EC_KEY_PAIR_GEN: "CKM_EC_KEY_PAIR_GEN",
    lib.CKM_ECDSA: "CKM_ECDSA",
    lib.CKM_RSA_PKCS_KEY_PAIR_GEN: "CKM_RSA_PKCS_KEY_PAIR_GEN",
    lib.CKM_SHA256_RSA_PKCS: "CKM_SHA256_RSA_PKCS",
    lib.CKM_SHA256_RSA_PKCS_PSS: "CKM_SHA256_RSA_PKCS_PSS",
    lib.CKM_GENERIC_SECRET_KEY_GEN: "CKM_GENERIC_SECRET_KEY_GEN",
    lib.CKM_SHA256_HMAC: "CKM_SHA256_HMAC",
    lib.CKM_AES_KEY_GEN: "CKM_AES_KEY_GEN",
    lib.CKM_AES_GCM: "CKM_AES_GCM",
}

# Generation mechanism, then the mechanism the kind is used with.
KIND_MECHANISMS: dict[KeyKind, tuple[int, int]] = {
    KeyKind.EC_P256: (lib.CKM_EC_KEY_PAIR_GEN, lib.CKM_ECDSA),
    KeyKind.RSA_2048: (lib.CKM_RSA_PKCS_KEY_PAIR_GEN, lib.CKM_SHA256_RSA_PKCS),
    KeyKind.HMAC_SHA256: (lib.CKM_GENERIC_SECRET_KEY_GEN, lib.CKM_SHA256_HMAC),
    KeyKind.AES_256: (lib.CKM_AES_KEY_GEN, lib.CKM_AES_GCM),
}

ALGORITHM_MECHANISMS: dict[SignAlgorithm, int] = {
    SignAlgorithm.ECDSA_SHA256: lib.CKM_ECDSA,
    SignAlgorithm.ECDSA_SHA256_DIGEST: lib.CKM_ECDSA,
    SignAlgorithm.RSA_PKCS1_SHA256: lib.CKM_SHA256_RSA_PKCS,
    SignAlgorithm.RSA_PSS_SHA256: lib.CKM_SHA256_RSA_PKCS_PSS,
    SignAlgorithm.HMAC_SHA256: lib.CKM_SHA256_HMAC,
}


def mechanism_name(mechanism: int) -> str:
    return MECHANISM_NAMES.get(mechanism, f"mechanism {mechanism:#x}")


def offered_kinds(mechanisms: frozenset[int]) -> frozenset[KeyKind]:
    """The key kinds a token with `mechanisms` can both create and use."""
    return frozenset(kind for kind, needed in KIND_MECHANISMS.items() if set(needed) <= mechanisms)


def missing_for_kind(kind: KeyKind, mechanisms: frozenset[int]) -> list[str]:
    return [mechanism_name(m) for m in KIND_MECHANISMS[kind] if m not in mechanisms]


# Built once: the token only reads a mechanism, so threads can share these.
_SIGN_MECHANISMS: dict[SignAlgorithm, Mechanism] = {
    algorithm: rsa_pss_sha256()
    if algorithm is SignAlgorithm.RSA_PSS_SHA256
    else Mechanism(mechanism)
    for algorithm, mechanism in ALGORITHM_MECHANISMS.items()
}


def sign_mechanism(algorithm: SignAlgorithm) -> Mechanism:
    """The mechanism (with parameters) to sign or verify `algorithm` on a token."""
    return _SIGN_MECHANISMS[algorithm]
