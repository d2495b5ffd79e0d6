"""Any input, however broken, ends in a `Config` or in problems placed in their files; no crash.

What holds for every input: a problem names its file (one of the layers) or at least its key, has a
message, and its line, when given, is a line of that file that mentions the key; problems come in
layer order; a syntax error without a line is one at the end of the document. A valid configuration
says where each value came from, and `config show` prints it back as TOML that loads to the same
settings. `key_lines` places every key of any TOML document `tomllib` accepts.
"""

from __future__ import annotations

import tempfile
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware.config import Config, ConfigProblems, load_config, schema
from firmware.config.errors import ConfigProblem
from firmware.config.loader import Evaluation, LayerSource, evaluate
from firmware.config.locate import key_lines
from firmware.config.report import _value, redacted, show_effective
from firmware.config.validate import build_config, fields_of, section_type, toml_key
from firmware.errors import ConfigError

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


def _table(**optional: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional=optional)


# Layers of real settings, mostly valid: the merge and the origins are exercised, not only errors.
SETTINGS = _table(
    hostname=st.sampled_from(["gw-1", "edge.local"]),
    homedir=st.sampled_from(["/var/lib/ek-iotedge", "relative/dir"]),  # IoT Edge's paths.data_dir
    paths=_table(data_dir=st.sampled_from(["/var/lib/ek", "/data"]), run_dir=st.just("/run/ek")),
    console=_table(
        device=st.sampled_from(["none", "pty", "/dev/ttyS0", "loop://", "COM1"]),
        baud=st.sampled_from([9600, 115200, 0]),
    ),
    logging=_table(level=st.sampled_from(["debug", "info", "loud"]), format=st.just("json")),
    watchdog=_table(max_retries=st.sampled_from([3, "infinite", 0])),
)

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


SECTIONS = frozenset(toml_key(f) for f, _tp in fields_of(Config))


def _other_spellings() -> dict[str, set[str]]:
    """Key name -> the other names a file may give it (aliases, IoT Edge spellings)."""
    spellings: dict[str, set[str]] = {}
    sections = [Config]
    while sections:
        for f, tp in fields_of(sections.pop()):
            spellings.setdefault(toml_key(f), set()).update(f.metadata.get(schema.ALIASES, ()))
            if (inner := section_type(tp)) is not None:
                sections.append(inner)
    for old, new in schema.IOTEDGE_RENAMED.items():
        spellings.setdefault(new.rsplit(".", 1)[-1], set()).add(old.rsplit(".", 1)[-1])
    return spellings


SPELLINGS = _other_spellings()


def _lines(text: str) -> list[str]:
    return text.split("\n")


def _assert_placed(problem: ConfigProblem, texts: Mapping[str, str]) -> None:
    """`problem` names its file (one of `texts`) or its key, and a line of that file."""
    assert isinstance(problem, ConfigProblem)
    assert problem.message.strip(), problem
    assert problem.hint is None or problem.hint.strip(), problem
    assert problem.file is not None or problem.key, f"{problem} is placed nowhere"
    assert problem.file is None or problem.file in texts, problem
    rendered = problem.render()
    assert problem.message in rendered and (problem.hint or "") in rendered
    if problem.file is not None:
        assert rendered.startswith(problem.file)
    if problem.line is None:
        if problem.message.startswith("TOML syntax error"):
            assert "end of document" in problem.message, problem
        return
    assert problem.file is not None, problem
    assert f"{problem.file}:{problem.line}: " in rendered
    lines = _lines(texts[problem.file])
    assert 1 <= problem.line <= len(lines), problem
    if problem.key:
        shown = lines[problem.line - 1]
        names = {n for part in problem.key.split(".") for n in {part, *SPELLINGS.get(part, ())}}
        assert any(name in shown for name in names), (problem, shown)


def _assert_sound(outcome: Evaluation, sources: Sequence[LayerSource]) -> None:
    """The outcome is a config or placed problems in layer order, never both, never neither."""
    texts = {source.name: source.text for source in sources}
    assert outcome.layers == tuple(texts)
    if outcome.config is None:
        assert outcome.problems
        for problem in outcome.problems:
            _assert_placed(problem, texts)
        order = list(texts)
        positions = [
            (order.index(p.file) if p.file in texts else -1, p.line or 0) for p in outcome.problems
        ]
        assert positions == sorted(positions)
        return
    assert outcome.problems == ()
    assert isinstance(outcome.config, Config)
    for key, origin in outcome.config.origins.items():
        file, line = _origin(origin)
        assert file in texts, (key, origin)
        assert line is None or 1 <= line <= len(_lines(texts[file])), (key, origin)
    shown = show_effective(outcome.config)
    again = evaluate([LayerSource("shown.toml", shown, board=True)])
    assert again.problems == (), (shown, again.problems)
    assert again.config is not None and redacted(again.config) == redacted(outcome.config)


def _origin(origin: str) -> tuple[str, int | None]:
    """`FILE:LINE` or `FILE`, as `Config.origins` shows where a value came from."""
    file, colon, line = origin.rpartition(":")
    return (file, int(line)) if colon and line.isdigit() else (origin, None)


def _walk_keys(table: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
    for key, value in table.items():
        dotted = f"{prefix}.{key}" if prefix else key
        yield dotted
        if isinstance(value, Mapping):
            yield from _walk_keys(value, dotted)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(TOMLISH, st.booleans())
def test_random_text_gives_a_config_or_placed_problems(text: str, board: bool) -> None:
    sources = [LayerSource("fuzz.toml", text, board=board)]
    _assert_sound(evaluate(sources), sources)


@settings(max_examples=300, deadline=None)
@given(TOMLISH)
def test_key_lines_places_every_key_that_toml_accepts(text: str) -> None:
    found = key_lines(text)
    assert all(1 <= line <= len(_lines(text)) for line in found.values()), found
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return
    for key in _walk_keys(document):
        # a table made only by dotted keys or [a.b] headers is placed through its keys
        assert key in found or any(k.startswith(key + ".") for k in found), (key, found)


@settings(max_examples=100, deadline=None)
@given(TOMLISH, TOMLISH)
def test_load_config_returns_a_config_or_raises_config_problems(main: str, drop_in: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "config.toml"
        path.write_text(main, encoding="utf-8")
        (Path(folder) / "config.d").mkdir()
        extra = Path(folder) / "config.d" / "10.toml"
        extra.write_text(drop_in, encoding="utf-8")
        texts = {str(path): main, str(extra): drop_in}
        try:
            config = load_config(path)
        except ConfigProblems as error:
            assert isinstance(error, ConfigError)
            assert error.problems
            for problem in error.problems:
                _assert_placed(problem, texts)
            rendered = error.render().splitlines()
            if len(error.problems) == 1:
                assert rendered == [error.problems[0].render()]
            else:
                assert rendered[0] == f"{len(error.problems)} configuration problems:"
                assert len(rendered) >= len(error.problems) + 1
            return
        assert isinstance(config, Config)
        for origin in config.origins.values():
            assert _origin(origin)[0] in texts, origin


@settings(max_examples=300, deadline=None)
@given(DOCUMENTS)
def test_random_documents_give_a_config_and_name_each_problem_key(document: dict) -> None:
    problems: list[tuple[str, str, str | None]] = []
    config = build_config(
        document, lambda key, message, hint: problems.append((key, message, hint))
    )
    assert isinstance(config, Config)
    known = SECTIONS | set(document)
    for key, message, hint in problems:
        assert any(key == top or key.startswith(top + ".") for top in known), key
        assert message.strip() and (hint is None or hint.strip()), (key, message, hint)
    again: list[tuple[str, str, str | None]] = []
    assert build_config(document, lambda *problem: again.append(problem)) == config
    assert again == problems


@settings(max_examples=200, deadline=None)
@given(DOCUMENTS, DOCUMENTS)
def test_random_layers_rendered_as_toml_give_a_config_or_problems(
    first: dict, second: dict
) -> None:
    texts = [_render(first), _render(second)]
    assert [tomllib.loads(text) for text in texts] == [first, second]  # the renderer is faithful
    sources = [LayerSource("a.toml", texts[0], board=True), LayerSource("b.toml", texts[1])]
    outcome = evaluate(sources)
    _assert_sound(outcome, sources)
    if outcome.config is not None:
        for key in second:
            origin = outcome.config.origins.get(key)
            assert origin is None or origin.startswith("b.toml"), (key, origin)


@settings(max_examples=200, deadline=None)
@given(SETTINGS, SETTINGS)
def test_the_later_layer_wins_and_each_value_names_its_layer(first: dict, second: dict) -> None:
    sources = [LayerSource("a.toml", _render(first)), LayerSource("b.toml", _render(second))]
    outcome = evaluate(sources)
    _assert_sound(outcome, sources)
    if outcome.config is None:
        return
    settings_now = redacted(outcome.config)
    for key, (value, layer) in _expected_leaves(first, second).items():
        section, name = key.rsplit(".", 1) if "." in key else ("", key)
        table = settings_now[section] if section else settings_now
        assert table[name] == value, key
        assert _origin(outcome.config.origins[key])[0] == layer, (key, outcome.config.origins)


def _expected_leaves(*layers: dict) -> dict[str, tuple[object, str]]:
    """Dotted key -> (value, layer name) of the last layer setting it; homedir is paths.data_dir."""
    expected: dict[str, tuple[object, str]] = {}
    for name, layer in zip(("a.toml", "b.toml"), layers, strict=True):
        for key, value in layer.items():
            if key == "homedir":
                expected["paths.data_dir"] = (value, name)
            elif isinstance(value, dict):
                expected.update({f"{key}.{k}": (v, name) for k, v in value.items()})
            else:
                expected[key] = (value, name)
    return expected


def _render(document: dict) -> str:
    return "\n".join(f'"{key}" = {_value(value)}' for key, value in document.items())
