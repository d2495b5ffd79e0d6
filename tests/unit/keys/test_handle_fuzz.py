"""Handle parsing under arbitrary input: anything that is not a handle this device issued is
refused with `InvalidKeyHandle`, never another exception."""

from __future__ import annotations

import asyncio
import hashlib
import hmac

from hypothesis import given
from hypothesis import strategies as st

from firmware.keys.errors import InvalidKeyHandle
from firmware.keys.handles import HandleAuthority, HandlePayload, assemble, mac_input, new_payload

SECRET = b"k" * 32


async def mac(data: bytes) -> bytes:
    return hmac.digest(SECRET, data, hashlib.sha256)


def verify(value):
    async def attempt():
        return await HandleAuthority(mac).verify(value)

    return asyncio.run(attempt())


def refused(value) -> bool:
    try:
        verify(value)
    except InvalidKeyHandle:
        return True
    return False


@given(st.text(max_size=300))
def test_arbitrary_text_is_refused(text):
    assert refused(text)


@given(st.binary(max_size=200))
def test_arbitrary_payload_bytes_with_a_valid_mac_are_refused_or_decoded(payload):
    handle = assemble(payload, hmac.digest(SECRET, mac_input(payload), hashlib.sha256))
    try:
        decoded = verify(handle)
    except InvalidKeyHandle:
        return
    assert isinstance(decoded, HandlePayload)


@given(st.binary(min_size=1, max_size=40), st.integers(min_value=0, max_value=10_000))
def test_changed_handles_are_refused(noise, position):
    payload = new_payload("device", "file", (b"module",)).encode()
    genuine = assemble(payload, hmac.digest(SECRET, mac_input(payload), hashlib.sha256)).value
    assert verify(genuine).key_id == "device"
    cut = position % len(genuine)
    forged = genuine[:cut] + noise.hex() + genuine[cut:]
    assert refused(forged)
