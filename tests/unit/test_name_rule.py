"""The one name rule: whole-text matches only, the `$` prefix only for identities."""

from __future__ import annotations

import pytest

from firmware.names import is_module_id, is_module_name


@pytest.mark.parametrize("name", ["edgeAgent", "temp-sensor_1", "a", "m.v2", "9lives", "x" * 63])
def test_accepts_module_names(name: str) -> None:
    assert is_module_name(name)
    assert is_module_id(name)


@pytest.mark.parametrize(
    "name",
    [
        "",
        "edgeAgent\n",
        "../../../tmp",
        ".hidden",
        "-x",
        "a/b",
        "x" * 64,
        "mod ule",
        "$edgeAgent",
        7,
    ],
)
def test_refuses_what_is_not_a_module_name(name: object) -> None:
    assert not is_module_name(name)


def test_identity_may_carry_the_system_prefix_once() -> None:
    assert is_module_id("$edgeAgent")
    assert not is_module_id("$$edgeAgent")
    assert not is_module_id("$edgeAgent\n")
