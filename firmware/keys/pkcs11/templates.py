"""PKCS#11 attribute templates for edgekeeper's key kinds, and reading a kind back from a token.

Keys are token objects labelled with the key id (CKA_LABEL, and CKA_ID for tools that pair
public and private objects by id). Private and secret keys are private, sensitive and not
extractable; each is allowed exactly the use its kind has. Pairs keep a public key object beside
the private one, so the public key and verification need no private material.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from firmware.keys import software
from firmware.keys.backend import KeyKind
from firmware.keys.errors import KeyOperationFailed
from firmware.keys.pkcs11 import der
from firmware.keys.pkcs11.binding import AttributeValue, Mechanism, Session, Template, lib, ulong

SECRET_LENGTH = 32
RSA_BITS = 2048
RSA_PUBLIC_EXPONENT = 65537
HMAC_IMPORT_RANGE = (16, 128)

# Attributes read to tell a key object's kind.
KIND_ATTRIBUTES = (
    lib.CKA_CLASS,
    lib.CKA_KEY_TYPE,
    lib.CKA_LABEL,
    lib.CKA_EC_PARAMS,
    lib.CKA_MODULUS,
    lib.CKA_VALUE_LEN,
)

_SECRET_TYPES = {
    KeyKind.HMAC_SHA256: lib.CKK_GENERIC_SECRET,
    KeyKind.AES_256: lib.CKK_AES,
}
_SECRET_GENERATORS = {
    KeyKind.HMAC_SHA256: lib.CKM_GENERIC_SECRET_KEY_GEN,
    KeyKind.AES_256: lib.CKM_AES_KEY_GEN,
}


@dataclass(frozen=True)
class NewKey:
    """How to make a key on the token: one generation call, or objects to create (import)."""

    mechanism: Mechanism | None
    private: Template
    public: Template | None = None


def _common(key_id: str) -> dict[int, AttributeValue]:
    return {lib.CKA_TOKEN: True, lib.CKA_LABEL: key_id, lib.CKA_ID: key_id.encode("utf-8")}


def _private(key_id: str, kind: KeyKind) -> dict[int, AttributeValue]:
    """Attributes of the private or secret half: private, sensitive, never extractable, and
    allowed only its kind's use (AES: GCM; HMAC: sign and verify; pairs: sign)."""
    template: dict[int, AttributeValue] = {
        **_common(key_id),
        lib.CKA_PRIVATE: True,
        lib.CKA_SENSITIVE: True,
        lib.CKA_EXTRACTABLE: False,
        lib.CKA_DERIVE: False,
        lib.CKA_SIGN: kind is not KeyKind.AES_256,
        lib.CKA_DECRYPT: kind is KeyKind.AES_256,
        lib.CKA_UNWRAP: False,
    }
    if not kind.asymmetric:
        template[lib.CKA_VERIFY] = kind is KeyKind.HMAC_SHA256
        template[lib.CKA_ENCRYPT] = kind is KeyKind.AES_256
        template[lib.CKA_WRAP] = False
    return template


def _public(key_id: str) -> dict[int, AttributeValue]:
    return {
        **_common(key_id),
        lib.CKA_PRIVATE: False,
        lib.CKA_VERIFY: True,
        lib.CKA_ENCRYPT: False,
        lib.CKA_WRAP: False,
    }


def generation(key_id: str, kind: KeyKind) -> NewKey:
    """The generation call for a new key of `kind` labelled `key_id`."""
    if kind is KeyKind.EC_P256:
        return NewKey(
            Mechanism(lib.CKM_EC_KEY_PAIR_GEN),
            _private(key_id, kind),
            {**_public(key_id), lib.CKA_EC_PARAMS: der.P256_EC_PARAMS},
        )
    if kind is KeyKind.RSA_2048:
        return NewKey(
            Mechanism(lib.CKM_RSA_PKCS_KEY_PAIR_GEN),
            _private(key_id, kind),
            {
                **_public(key_id),
                lib.CKA_MODULUS_BITS: RSA_BITS,
                lib.CKA_PUBLIC_EXPONENT: der.integer_bytes(RSA_PUBLIC_EXPONENT),
            },
        )
    return NewKey(
        Mechanism(_SECRET_GENERATORS[kind]),
        {**_private(key_id, kind), lib.CKA_VALUE_LEN: SECRET_LENGTH},
    )


def importing(key_id: str, kind: KeyKind, material: bytes) -> NewKey:
    """Objects to create for caller-supplied material (raw secret, or PKCS#8 DER for pairs)."""
    if not kind.asymmetric:
        return NewKey(
            None,
            {
                **_private(key_id, kind),
                lib.CKA_CLASS: lib.CKO_SECRET_KEY,
                lib.CKA_KEY_TYPE: _SECRET_TYPES[kind],
                lib.CKA_VALUE: _check_secret(key_id, kind, material),
            },
        )
    private_key = software.load_pkcs8(key_id, kind, material)
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        return _ec_import(key_id, private_key)
    return _rsa_import(key_id, private_key)


def _check_secret(key_id: str, kind: KeyKind, material: bytes) -> bytes:
    if kind is KeyKind.AES_256 and len(material) != SECRET_LENGTH:
        raise KeyOperationFailed(
            f"AES-256 key {key_id!r} must be {SECRET_LENGTH} bytes, got {len(material)}"
        )
    low, high = HMAC_IMPORT_RANGE
    if kind is KeyKind.HMAC_SHA256 and not low <= len(material) <= high:
        raise KeyOperationFailed(
            f"HMAC key {key_id!r} must be {low} to {high} bytes, got {len(material)}"
        )
    return bytes(material)


def _ec_import(key_id: str, private_key: ec.EllipticCurvePrivateKey) -> NewKey:
    point = private_key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    scalar = private_key.private_numbers().private_value.to_bytes(der.P256_SCALAR_LENGTH, "big")
    key_type: Template = {lib.CKA_KEY_TYPE: lib.CKK_EC, lib.CKA_EC_PARAMS: der.P256_EC_PARAMS}
    return NewKey(
        None,
        {
            **_private(key_id, KeyKind.EC_P256),
            lib.CKA_CLASS: lib.CKO_PRIVATE_KEY,
            **key_type,
            lib.CKA_VALUE: scalar,
        },
        {
            **_public(key_id),
            lib.CKA_CLASS: lib.CKO_PUBLIC_KEY,
            **key_type,
            lib.CKA_EC_POINT: der.ec_point_attribute(point),
        },
    )


def _rsa_import(key_id: str, private_key: rsa.RSAPrivateKey) -> NewKey:
    numbers = private_key.private_numbers()
    public = numbers.public_numbers
    big = der.integer_bytes
    key_type: Template = {
        lib.CKA_KEY_TYPE: lib.CKK_RSA,
        lib.CKA_MODULUS: big(public.n),
        lib.CKA_PUBLIC_EXPONENT: big(public.e),
    }
    return NewKey(
        None,
        {
            **_private(key_id, KeyKind.RSA_2048),
            lib.CKA_CLASS: lib.CKO_PRIVATE_KEY,
            **key_type,
            lib.CKA_PRIVATE_EXPONENT: big(numbers.d),
            lib.CKA_PRIME_1: big(numbers.p),
            lib.CKA_PRIME_2: big(numbers.q),
            lib.CKA_EXPONENT_1: big(numbers.dmp1),
            lib.CKA_EXPONENT_2: big(numbers.dmq1),
            lib.CKA_COEFFICIENT: big(numbers.iqmp),
        },
        {**_public(key_id), lib.CKA_CLASS: lib.CKO_PUBLIC_KEY, **key_type},
    )


def create(session: Session, new: NewKey) -> None:
    """Make the key on the token: generate it, or create its objects (public one first)."""
    if new.mechanism is not None:
        if new.public is None:
            session.generate_key(new.mechanism, new.private)
        else:
            session.generate_key_pair(new.mechanism, new.public, new.private)
        return
    public = session.create_object(new.public) if new.public is not None else None
    try:
        session.create_object(new.private)
    except BaseException:
        if public is not None:
            session.destroy(public)
        raise


def kind_of(attributes: dict[int, bytes | None]) -> KeyKind | None:
    """The kind of a private or secret key object from its KIND_ATTRIBUTES; None if foreign."""
    raw_type = attributes.get(lib.CKA_KEY_TYPE)
    if raw_type is None:
        return None
    key_type = ulong(raw_type)
    if key_type == lib.CKK_EC:
        return KeyKind.EC_P256 if attributes.get(lib.CKA_EC_PARAMS) == der.P256_EC_PARAMS else None
    if key_type == lib.CKK_RSA:
        modulus = attributes.get(lib.CKA_MODULUS) or b""
        return KeyKind.RSA_2048 if len(modulus.lstrip(b"\0")) * 8 == RSA_BITS else None
    if key_type == lib.CKK_AES:
        length = attributes.get(lib.CKA_VALUE_LEN)
        return KeyKind.AES_256 if length is not None and ulong(length) == SECRET_LENGTH else None
    if key_type in (lib.CKK_GENERIC_SECRET, lib.CKK_SHA256_HMAC):
        return KeyKind.HMAC_SHA256
    return None


def object_class(attributes: dict[int, bytes | None]) -> int | None:
    raw = attributes.get(lib.CKA_CLASS)
    return None if raw is None else ulong(raw)
