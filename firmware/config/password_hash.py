"""The console password's hash: its text format, making one, and checking a password against it.

`[console] password_hash` holds one line made by `edgekeeper console-password`:

    scrypt$n=16384,r=8,p=1$<salt, base64>$<digest, base64>

scrypt (stdlib `hashlib.scrypt`) with cost `n` (a power of two), block size `r` and parallelism `p`;
the digest's length is the derived key's length. `PasswordHash.parse` refuses parameters that
would let a bad config make a check take seconds or allocate more than `MAX_MEMORY` (or make a
weak hash): 2^12 <= n <= 2^16, r <= 16, p <= 4, 128*n*r <= 32 MiB, n*r*p <= 4 times the default
work. `verifies` compares digests in constant time. Passwords are NFC-normalised UTF-8, so the
same text typed on another terminal gives the same bytes.

It lives with the configuration, which checks the setting's form when it loads (`config
validate` names the file and line); the CLI makes hashes and the console checks passwords.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import unicodedata
from dataclasses import dataclass, field

from firmware.errors import ConfigError

SCHEME = "scrypt"
DEFAULT_N = 2**14
DEFAULT_R = 8
DEFAULT_P = 1
SALT_BYTES = 16
DIGEST_BYTES = 32

MIN_N = 2**12
MAX_N = 2**16
MAX_R = 16
MAX_P = 4
MAX_MEMORY = 32 * 1024 * 1024  # bytes scrypt needs: 128 * n * r
MAX_WORK = 4 * DEFAULT_N * DEFAULT_R * DEFAULT_P  # n * r * p
MIN_BYTES, MAX_BYTES = 16, 64  # bounds of salt and digest

SETTING = "[console] password_hash"
HINT = "make one with `edgekeeper console-password`"


def _encoded(password: str) -> bytes:
    return unicodedata.normalize("NFC", password).encode("utf-8")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@dataclass(frozen=True)
class PasswordHash:
    """A parsed scrypt hash; its `repr` shows the parameters only."""

    n: int
    r: int
    p: int
    salt: bytes = field(repr=False)
    digest: bytes = field(repr=False)

    @classmethod
    def make(cls, password: str) -> PasswordHash:
        """The hash of `password` with the default parameters and a fresh random salt."""
        salt = secrets.token_bytes(SALT_BYTES)
        digest = _scrypt(password, salt, DEFAULT_N, DEFAULT_R, DEFAULT_P, DIGEST_BYTES)
        return cls(DEFAULT_N, DEFAULT_R, DEFAULT_P, salt, digest)

    @classmethod
    def parse(cls, text: str) -> PasswordHash:
        """The hash in `text`; `ConfigError` naming the setting (never showing its value)."""
        parts = text.strip().split("$")
        if len(parts) != 4 or parts[0] != SCHEME:
            raise _unusable(f"not of the form {SCHEME}$n=N,r=R,p=P$SALT$DIGEST")
        params = _parameters(parts[1])
        salt, digest = _bytes(parts[2], "salt"), _bytes(parts[3], "digest")
        n, r, p = params["n"], params["r"], params["p"]
        if n < MIN_N or n > MAX_N or n & (n - 1):
            raise _unusable(f"n must be a power of two from {MIN_N} to {MAX_N}")
        if not 1 <= r <= MAX_R or not 1 <= p <= MAX_P:
            raise _unusable(f"r must be 1 to {MAX_R} and p 1 to {MAX_P}")
        if 128 * n * r > MAX_MEMORY or n * r * p > MAX_WORK:
            raise _unusable(
                f"n, r and p ask for more than {MAX_MEMORY // 2**20} MiB or "
                f"{MAX_WORK // (DEFAULT_N * DEFAULT_R * DEFAULT_P)} times the default work"
            )
        return cls(n, r, p, salt, digest)

    def text(self) -> str:
        """The hash as `[console] password_hash` holds it."""
        params = f"n={self.n},r={self.r},p={self.p}"
        return f"{SCHEME}${params}${_b64(self.salt)}${_b64(self.digest)}"

    def verifies(self, password: str) -> bool:
        """Whether `password` is the one hashed (blocks for the scrypt work: keep off the loop)."""
        digest = _scrypt(password, self.salt, self.n, self.r, self.p, len(self.digest))
        return hmac.compare_digest(digest, self.digest)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
    return hashlib.scrypt(
        _encoded(password), salt=salt, n=n, r=r, p=p, maxmem=2 * MAX_MEMORY, dklen=length
    )


def _parameters(text: str) -> dict[str, int]:
    found: dict[str, int] = {}
    for item in text.split(","):
        name, equals, value = item.partition("=")
        if not equals or name not in ("n", "r", "p") or name in found:
            raise _unusable("the parameters must be n=N,r=R,p=P, each once")
        if not value.isascii() or not value.isdigit():
            raise _unusable(f"{name} must be a whole number")
        if len(value) > 9:
            raise _unusable(f"{name} is out of range")
        found[name] = int(value)
    if len(found) != 3:
        raise _unusable("the parameters must be n=N,r=R,p=P, each once")
    return found


def _bytes(text: str, what: str) -> bytes:
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise _unusable(f"the {what} is not base64") from None
    if not MIN_BYTES <= len(data) <= MAX_BYTES:
        raise _unusable(f"the {what} must be {MIN_BYTES} to {MAX_BYTES} bytes")
    return data


class UnusableHash(ConfigError):
    """`[console] password_hash` cannot be used; `reason` says why without showing it."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"{SETTING} is not a usable hash: {reason}", hint=HINT)
        self.reason = reason


def _unusable(reason: str) -> UnusableHash:
    return UnusableHash(reason)
