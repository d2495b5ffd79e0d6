"""Any input, however broken, ends in a `Config` or a `ConfigProblems`, never in a crash."""

from __future__ import annotations

import tempfile
import tomllib
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware.config import Config, ConfigProblems, load_config
from firmware.config.errors import ConfigProblem
from firmware.config.loader import LayerSource, evaluate
from firmware.config.locate import key_lines
from firmware.config.validate import build_config

KEYS = st.sampled_from(
    [
        "hostname",
        "provisioning",
        "source",
        "authentication",
        "device_id_pk",
        "value",
        "uri",
        "console",
        "baud",
        "device",
        "keys",
        "pkcs11",
        "backends",
        "agent",
        "config",
        "createOptions",
        "env",
        "watchdog",
        "max_retries",
        "moby_runtime",
        "runtime",
        "board",
        "devices",
        "i2c",
        "paths",
        "run_dir",
        "attestation",
        "method",
        "edge_ca",
        "x y",
        "a.b",
    ]
)
SCALARS = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.sampled_from(["manual", "dps", "sas", "pty", "infinite", "/dev/ttyS0", "unix:///x"]),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=12,
)
DOCUMENTS = st.dictionaries(KEYS, VALUES, max_size=6)

TOMLISH = st.lists(
    st.one_of(
        st.sampled_from(
            [
                "[provisioning]",
                "[[agent]]",
                "[console",
                "baud = 9600",
                "baud = 'x'",
                'source = "manual"',
                "a.b.c = 1",
                '"q" = { x = 1, y = [1, 2] }',
                'x = """',
                "[moby_runtime]",
                "uri = 5",
                "= 3",
                "key = ",
                "[board.devices]",
                "i2c = [",
                "# comment",
                "",
                "max_retries = -1",
                "\\u0000",
                "value = '''x'''",
            ]
        ),
        st.text(max_size=30),
    ),
    max_size=12,
).map("\n".join)


def _outcome_is_sound(sources: list[LayerSource]) -> None:
    outcome = evaluate(sources)
    if outcome.config is None:
        assert outcome.problems
        for problem in outcome.problems:
            assert isinstance(problem, ConfigProblem)
            assert problem.render()
    else:
        assert outcome.problems == ()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(TOMLISH, st.booleans())
def test_random_text_gives_a_config_or_problems(text: str, board: bool) -> None:
    _outcome_is_sound([LayerSource("fuzz.toml", text, board=board)])
    key_lines(text)


@settings(max_examples=100, deadline=None)
@given(TOMLISH, TOMLISH)
def test_load_config_returns_a_config_or_raises_config_problems(main: str, drop_in: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "config.toml"
        path.write_text(main, encoding="utf-8")
        (Path(folder) / "config.d").mkdir()
        (Path(folder) / "config.d" / "10.toml").write_text(drop_in, encoding="utf-8")
        try:
            assert isinstance(load_config(path), Config)
        except ConfigProblems as error:
            assert error.problems
            assert error.render()


@settings(max_examples=300, deadline=None)
@given(DOCUMENTS)
def test_random_documents_give_a_config_or_problems(document: dict) -> None:
    problems: list[str] = []
    build_config(document, lambda key, message, hint: problems.append(key))


@settings(max_examples=200, deadline=None)
@given(DOCUMENTS, DOCUMENTS)
def test_random_layers_rendered_as_toml_give_a_config_or_problems(
    first: dict, second: dict
) -> None:
    from firmware.config.report import _value

    def render(document: dict) -> str:
        return "\n".join(f"{_key(k)} = {_value(v)}" for k, v in document.items())

    texts = [render(first), render(second)]
    for text in texts:
        tomllib.loads(text)  # the renderer writes valid TOML
    _outcome_is_sound(
        [LayerSource("a.toml", texts[0], board=True), LayerSource("b.toml", texts[1])]
    )


def _key(key: str) -> str:
    return f'"{key}"'
