"""Request bodies as JSON: whatever bytes a client sends, `ApiRequest.json()` returns a document
or raises `BadRequest` (never another error, never a deep recursion): over-long integers, NaN,
nesting beyond `MAX_JSON_DEPTH` (also inside objects, not fooled by brackets in strings) are 400s
naming the problem."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware.api.model import ApiRequest
from firmware.errors import BadRequest
from firmware.json_text import MAX_INTEGER_DIGITS, MAX_JSON_DEPTH


def parsed(body: bytes) -> object:
    return ApiRequest("POST", "/", body=body).json()


def refusal(body: bytes) -> str:
    with pytest.raises(BadRequest) as refused:
        parsed(body)
    assert refused.value.http_status == 400
    return refused.value.render()


def nested(depth: int, opening: str = "[", closing: str = "]") -> bytes:
    return (opening * depth + closing * depth).encode()


def test_nesting_up_to_the_bound_is_read_and_beyond_it_is_refused() -> None:
    assert parsed(nested(MAX_JSON_DEPTH)) == json.loads(nested(MAX_JSON_DEPTH))
    assert "nested more than 64 levels" in refusal(nested(MAX_JSON_DEPTH + 1))
    assert "nested more than 64 levels" in refusal(nested(100_000))
    assert "nested more than 64 levels" in refusal(b"[" * 100_000)
    deep_objects = b'{"a":' * (MAX_JSON_DEPTH + 1) + b"1" + b"}" * (MAX_JSON_DEPTH + 1)
    assert "nested more than 64 levels" in refusal(deep_objects)
    wide = b"[" + b",".join([nested(MAX_JSON_DEPTH - 1)] * 1000) + b"]"
    assert len(parsed(wide)) == 1000  # many brackets, none too deep


def test_brackets_inside_strings_are_not_nesting() -> None:
    document = {"text": "[{" * 10_000, "quoted": '\\"[[[[' * 1000, "unicode": "é[" * 500}
    assert parsed(json.dumps(document, ensure_ascii=False).encode()) == document


def test_long_integers_and_non_numbers_are_refused() -> None:
    assert parsed(b"9" * MAX_INTEGER_DIGITS) == int("9" * MAX_INTEGER_DIGITS)
    assert "an integer has 5000 digits" in refusal(b'{"n": ' + b"1" * 5000 + b"}")
    assert "an integer has 41 digits" in refusal(b"-" + b"1" * 41)
    assert "NaN is not a JSON number" in refusal(b'{"x": NaN}')
    assert "Infinity is not a JSON number" in refusal(b"[-Infinity]")
    assert parsed(b"1e999") == float("inf")  # a float too large is a float: no error


def test_text_that_is_not_utf8_json_is_refused() -> None:
    assert "not UTF-8" in refusal(b'"\xff"')
    assert "not UTF-8" in refusal('["x"]'.encode("utf-16"))
    assert "not valid JSON" in refusal(b'{"a": ')
    assert "is empty" in refusal(b"")


json_documents = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=1 - 10**MAX_INTEGER_DIGITS, max_value=10**MAX_INTEGER_DIGITS - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=30,
)


@settings(max_examples=500, deadline=None)
@given(
    body=st.binary(max_size=300)
    | st.text(alphabet='[]{}",:\\01 a-eE.', max_size=300).map(str.encode)
)
def test_any_bytes_are_a_document_or_a_bad_request(body: bytes) -> None:
    try:
        parsed(body)
    except BadRequest as error:
        assert error.http_status == 400


@settings(max_examples=300, deadline=None)
@given(document=json_documents)
def test_any_shallow_document_reads_back_as_sent(document: object) -> None:
    body = json.dumps(document).encode()
    assert parsed(body) == json.loads(body)
