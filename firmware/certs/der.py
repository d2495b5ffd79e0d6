"""A small DER writer: just enough to assemble an X.509 Certificate around a signed TBSCertificate.

Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm AlgorithmIdentifier,
signatureValue BIT STRING }. The TBS bytes come from `cryptography`; the signature comes from the
key service (any backend); this module only frames them.
"""

from __future__ import annotations

SEQUENCE = 0x30
BIT_STRING = 0x03

#: AlgorithmIdentifier DER of ecdsa-with-SHA256 (1.2.840.10045.4.3.2), parameters absent.
ECDSA_WITH_SHA256 = bytes.fromhex("300a06082a8648ce3d040302")
#: AlgorithmIdentifier DER of sha256WithRSAEncryption (1.2.840.113549.1.1.11), NULL parameters.
SHA256_WITH_RSA = bytes.fromhex("300d06092a864886f70d01010b0500")


def length(size: int) -> bytes:
    """DER definite length: short form below 128, else 0x80|n followed by n big-endian bytes."""
    if size < 0:
        raise ValueError("negative DER length")
    if size < 0x80:
        return bytes([size])
    encoded = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(encoded)]) + encoded


def tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + length(len(content)) + content


def sequence(*members: bytes) -> bytes:
    return tlv(SEQUENCE, b"".join(members))


def bit_string(data: bytes) -> bytes:
    """A BIT STRING of whole bytes (no unused bits)."""
    return tlv(BIT_STRING, b"\x00" + data)


def certificate(tbs: bytes, algorithm_identifier: bytes, signature: bytes) -> bytes:
    return sequence(tbs, algorithm_identifier, bit_string(signature))
