"""Hypothesis: the workload request parsers and routes answer any body with a result or a 4xx,
never a crash or a 500."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware.api.workload import requests
from firmware.errors import EdgekeeperError
from tests.unit.api.workload.workload_rig import workload_rig

FIELDS = [
    "keyId",
    "algo",
    "data",
    "plaintext",
    "ciphertext",
    "initializationVector",
    "commonName",
    "expiration",
]
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=40)
    | st.sampled_from(
        ["primary", "HMACSHA256", "AAAA", "AAAAAAAAAAAAAAAA", "2099-01-01T00:00:00Z"]
    ),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
bodies = st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), json_values, max_size=6)
PARSERS = [
    requests.parse_sign,
    requests.parse_encrypt,
    requests.parse_decrypt,
    requests.parse_server_certificate,
    requests.parse_identity_certificate,
]


@settings(max_examples=400, deadline=None)
@given(body=bodies, parser=st.sampled_from(PARSERS))
def test_parsers_return_or_raise_a_4xx(body: dict, parser) -> None:
    try:
        parser(body)
    except EdgekeeperError as error:
        assert 400 <= error.http_status < 500, error.render()


ENDPOINTS = ["sign", "encrypt", "decrypt", "certificate/server"]


def test_routes_answer_any_body_with_a_4xx_or_success(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with workload_rig(tmp_path) as rig:
            genid = (await rig.identities.create("m")).generation_id
            seen: list[int] = []

            @settings(
                max_examples=300,
                deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture],
            )
            @given(
                raw=st.one_of(bodies.map(lambda b: json.dumps(b).encode()), st.binary(max_size=64)),
                endpoint=st.sampled_from(ENDPOINTS),
                genid_used=st.sampled_from([genid, "0", "x" * 30]),
            )
            def check(raw: bytes, endpoint: str, genid_used: str) -> None:
                answer = asyncio.run_coroutine_threadsafe(
                    rig.call(
                        "POST",
                        f"/modules/m/genid/{genid_used}/{endpoint}",
                        raw=raw,
                        listener="workload:m",
                    ),
                    loop,
                ).result(timeout=30)
                seen.append(answer.status)
                assert answer.status in (200, 201) or 400 <= answer.status < 500, answer.json()

            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, check)
            assert any(400 <= status < 500 for status in seen)

    asyncio.run(scenario())


IDENTITY_FIELDS = ["moduleId", "managedBy", "generationId"]
identity_bodies = st.dictionaries(
    st.sampled_from(IDENTITY_FIELDS) | st.text(max_size=8), json_values, max_size=4
)


def test_identity_routes_answer_any_body_with_a_4xx_or_success(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with workload_rig(tmp_path) as rig:
            await rig.identities.create("m")
            loop = asyncio.get_running_loop()

            @settings(max_examples=200, deadline=None)
            @given(
                raw=st.one_of(
                    identity_bodies.map(lambda b: json.dumps(b).encode()), st.binary(max_size=32)
                ),
                method_path=st.sampled_from([("POST", "/identities"), ("PUT", "/identities/m")]),
            )
            def check(raw: bytes, method_path: tuple[str, str]) -> None:
                method, path = method_path
                answer = asyncio.run_coroutine_threadsafe(
                    rig.call(method, path, raw=raw, listener="mgmt"), loop
                ).result(timeout=30)
                assert answer.status == 200 or 400 <= answer.status < 500, answer.json()

            await loop.run_in_executor(None, check)

    asyncio.run(scenario())
