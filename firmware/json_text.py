"""`read_json`: JSON text from a client, read within bounds the client cannot push the parser past.

Nesting at most `MAX_JSON_DEPTH` deep (checked on the bytes before parsing, so a deep document
never reaches the recursive parser), integers of at most `MAX_INTEGER_DIGITS` digits (Python's
own limit is thousands, each costing quadratic time), no NaN or Infinity. Whatever arrives,
`read_json` returns a document or raises `BadRequest` naming what it read (a request body, a
createOptions string) and what is wrong. Used for every request body and for JSON carried inside
one (a module's createOptions given as a string).
"""

from __future__ import annotations

import json
import re
from array import array
from itertools import accumulate

from firmware.errors import BadRequest

MAX_JSON_DEPTH = 64
MAX_INTEGER_DIGITS = 40

# A JSON string (its closing quote optional, so an unterminated one is consumed in one pass).
_STRING = re.compile(rb'"[^"\\]*(?:\\[\s\S][^"\\]*)*"?')
# Opening brackets become +1 and closing ones -1 (as signed bytes); every other byte is dropped.
_DEPTH_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[{]}")))


def read_json(data: bytes | str, what: str) -> object:
    """`data` parsed as JSON; `BadRequest` naming `what` (e.g. "request body") otherwise."""
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest(f"{what} is not UTF-8 text", hint="send a JSON document") from None
    # On UTF-8 bytes the scan is exact: no multi-byte character holds a bracket or a quote.
    if _nested_deeper_than(data, MAX_JSON_DEPTH):
        raise _too_deep(what)
    try:
        return json.loads(text, parse_int=_bounded_int, parse_constant=_no_constant)
    except json.JSONDecodeError as error:
        raise BadRequest(
            f"{what} is not valid JSON: {error.msg} at line {error.lineno} column {error.colno}",
            hint="send a JSON document",
        ) from None
    except _NumberRefused as error:
        raise BadRequest(f"{what} is not valid JSON: {error}", hint=error.hint) from None
    except ValueError:
        raise BadRequest(
            f"{what} is not valid JSON: a number in it cannot be read",
            hint=f"send integers of at most {MAX_INTEGER_DIGITS} digits",
        ) from None
    except RecursionError:
        # A backstop: the scan above lets no text this deep reach the parser.
        raise _too_deep(what) from None


class _NumberRefused(ValueError):
    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.hint = hint


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INTEGER_DIGITS:
        raise _NumberRefused(
            f"an integer has {len(text.lstrip('-'))} digits",
            hint=f"send integers of at most {MAX_INTEGER_DIGITS} digits",
        )
    return int(text)


def _no_constant(name: str) -> object:
    raise _NumberRefused(f"{name} is not a JSON number", hint="send finite numbers")


def _too_deep(what: str) -> BadRequest:
    return BadRequest(
        f"{what} is nested more than {MAX_JSON_DEPTH} levels deep",
        hint="send a flatter JSON document",
    )


def _nested_deeper_than(body: bytes, limit: int) -> bool:
    """True if the arrays and objects of a JSON text nest more than `limit` deep.

    Cheap on every body: with no more than `limit` brackets it cannot; otherwise, with the strings
    dropped, each bracket becomes a step of +1 or -1 and the highest running sum is the depth
    (all in C: one regex pass, one translate, one accumulate). An unbalanced text is left to the
    parser to name.
    """
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    steps = array("b", _STRING.sub(b"", body).translate(_DEPTH_STEPS, _NOT_BRACKETS))
    return max(accumulate(steps), default=0) > limit
