"""Opaque key handles: what callers hold instead of key names.

A handle is `base64url(payload) "." base64url(mac)`. The payload names the key id, its backend, the
derivation labels (empty for a stored key) and a random nonce; the MAC is HMAC-SHA256 over a
domain-separated copy of the payload by the handle-validation key, which lives in the default
backend and never leaves it. A handle that was altered, cut short or pieced together from two
handles does not verify and is refused with `InvalidKeyHandle`. Verification compares MACs in
constant time; positive results are kept in a small LRU so hardware backends are not asked again for
every use of the same handle.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import os
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from firmware.keys.errors import InvalidDerivationLabel, InvalidKeyHandle

HANDLE_VALIDATION_KEY = "edgekeeper-handle-validation"
MAX_HANDLE_LENGTH = 4096
MAX_LABEL_LENGTH = 1024
NONCE_LENGTH = 16
_DOMAIN = b"edgekeeper key handle v1\x00"
_HINT = "load the key again to get a fresh handle; handles cannot be edited or combined"


@dataclass(frozen=True)
class KeyHandle:
    """An opaque, unforgeable reference to a key; `str(handle)` is what crosses APIs."""

    value: str

    def __str__(self) -> str:
        return self.value

    def __repr__(self) -> str:
        return f"KeyHandle({self.value[:12]}...)"


@dataclass(frozen=True)
class HandlePayload:
    """What a verified handle says: which key, in which backend, derived by which labels."""

    key_id: str
    backend: str
    labels: tuple[bytes, ...] = ()
    nonce: bytes = b""

    @property
    def derived(self) -> bool:
        return bool(self.labels)

    def encode(self) -> bytes:
        """The canonical payload bytes (compact JSON, sorted keys)."""
        document = {
            "b": self.backend,
            "k": self.key_id,
            "l": [_b64(label) for label in self.labels],
            "n": _b64(self.nonce),
            "v": 1,
        }
        return json.dumps(document, separators=(",", ":"), sort_keys=True).encode("ascii")

    @classmethod
    def decode(cls, data: bytes) -> HandlePayload:
        try:
            document = json.loads(data)
            if document.get("v") != 1:
                raise ValueError("unknown handle version")
            key_id, backend = document["k"], document["b"]
            if not isinstance(key_id, str) or not isinstance(backend, str):
                raise ValueError("bad key id or backend")
            labels = tuple(_unb64(label) for label in document["l"])
            nonce = _unb64(document["n"])
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise InvalidKeyHandle("key handle payload is malformed", hint=_HINT) from err
        return cls(key_id=key_id, backend=backend, labels=labels, nonce=nonce)


def new_payload(key_id: str, backend: str, labels: tuple[bytes, ...] = ()) -> HandlePayload:
    """A payload with a fresh random nonce."""
    nonce = os.urandom(NONCE_LENGTH)
    return HandlePayload(key_id=key_id, backend=backend, labels=labels, nonce=nonce)


def mac_input(payload_bytes: bytes) -> bytes:
    """What the validation key MACs: the payload behind a domain-separation prefix."""
    return _DOMAIN + payload_bytes


def assemble(payload_bytes: bytes, mac: bytes) -> KeyHandle:
    return KeyHandle(f"{_b64(payload_bytes)}.{_b64(mac)}")


def split(handle: KeyHandle | str) -> tuple[bytes, bytes]:
    """The payload bytes and MAC of a handle string; `InvalidKeyHandle` if it is not one."""
    value = handle.value if isinstance(handle, KeyHandle) else handle
    if not isinstance(value, str) or not value:
        raise InvalidKeyHandle("key handle is empty or not a string", hint=_HINT)
    if len(value) > MAX_HANDLE_LENGTH:
        raise InvalidKeyHandle(f"key handle is over {MAX_HANDLE_LENGTH} characters", hint=_HINT)
    payload_text, sep, mac_text = value.partition(".")
    if not sep or not payload_text or not mac_text:
        raise InvalidKeyHandle("key handle is truncated or not a key handle", hint=_HINT)
    try:
        return _unb64(payload_text), _unb64(mac_text)
    except ValueError:
        raise InvalidKeyHandle("key handle is not valid base64url", hint=_HINT) from None


class HandleAuthority:
    """Issues and verifies handles with a MAC function backed by the validation key.

    `mac` computes HMAC-SHA256 with the validation key (off the event loop, through the key
    service's executor); the authority never sees the key itself.
    """

    def __init__(self, mac: Callable[[bytes], Awaitable[bytes]], *, cache_size: int = 1024) -> None:
        self._mac = mac
        self._cache_size = cache_size
        self._verified: OrderedDict[str, HandlePayload] = OrderedDict()

    async def issue(self, payload: HandlePayload) -> KeyHandle:
        for label in payload.labels:
            _check_label(label)
        payload_bytes = payload.encode()
        handle = assemble(payload_bytes, await self._mac(mac_input(payload_bytes)))
        self._remember(handle.value, payload)
        return handle

    async def verify(self, handle: KeyHandle | str) -> HandlePayload:
        value = handle.value if isinstance(handle, KeyHandle) else handle
        cached = self._verified.get(value) if isinstance(value, str) else None
        if cached is not None:
            self._verified.move_to_end(value)
            return cached
        payload_bytes, mac = split(value)
        expected = await self._mac(mac_input(payload_bytes))
        if not hmac.compare_digest(expected, mac):
            raise InvalidKeyHandle(
                "key handle does not verify: it was altered, truncated, or made for another key",
                hint=_HINT,
            )
        payload = HandlePayload.decode(payload_bytes)
        self._remember(value, payload)
        return payload

    def forget(self, key_id: str, backend: str) -> None:
        """Drop cached verifications of a deleted key's handles."""
        stale = [
            value
            for value, payload in self._verified.items()
            if payload.key_id == key_id and payload.backend == backend
        ]
        for value in stale:
            del self._verified[value]

    def _remember(self, value: str, payload: HandlePayload) -> None:
        self._verified[value] = payload
        self._verified.move_to_end(value)
        while len(self._verified) > self._cache_size:
            self._verified.popitem(last=False)


def _check_label(label: bytes) -> None:
    if not isinstance(label, bytes) or not 1 <= len(label) <= MAX_LABEL_LENGTH:
        raise InvalidDerivationLabel(
            f"derivation label must be 1 to {MAX_LABEL_LENGTH} bytes",
            hint="pass the label as bytes, e.g. the module id and generation id",
        )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    if not isinstance(text, str) or "=" in text:
        raise ValueError("not unpadded base64url")
    try:
        data = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError) as err:
        raise ValueError("not base64url") from err
    if _b64(data) != text:
        raise ValueError("not canonical base64url")
    return data
