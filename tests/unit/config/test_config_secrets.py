"""Secrets in the configuration: no problem ever shows a secret setting's value, a secret written
inside other text is redacted wherever a problem is rendered, and a file holding secrets must be
readable by its owner alone."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware.config import ConfigProblems, load_config, schema, validate_files
from firmware.config.errors import ConfigProblem
from firmware.config.loader import LayerSource, evaluate
from firmware.config.secrets import secret_keys
from firmware.config.validate import _build_table, fields_of, section_type, toml_key
from firmware.errors import ConfigError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance


def secret_settings(
    cls: type[DataclassInstance] = schema.Config, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], bool]]:
    """Every secret setting of the schema and every table holding one: (TOML path, is a table)."""
    for f, tp in fields_of(cls):
        here = (*path, toml_key(f))
        section = section_type(tp)
        if f.metadata.get(schema.SECRET):
            yield here, False
        elif section is not None:
            if any(g.metadata.get(schema.SECRET) for g, _ in fields_of(section)):
                yield here, True
            yield from secret_settings(section, here)


SECRET_SETTINGS = sorted(secret_settings())
MARK = "Qz7"  # no message, key or hint of the schema holds it

#: Values of the wrong type for a secret string (or a table holding secrets), each distinctive.
WRONG_VALUES = st.recursive(
    st.integers(100_000, 10**15)
    | st.floats(1000.5, 1e12, allow_nan=False)
    | st.booleans()
    | st.text(st.characters(codec="ascii", categories=("L", "N")), min_size=6, max_size=60).map(
        lambda text: MARK + text
    ),
    lambda inner: (
        st.lists(inner, min_size=1, max_size=3)
        | st.dictionaries(st.sampled_from(["value", "pin", "x"]), inner, min_size=1, max_size=2)
    ),
    max_leaves=4,
)


def nested(path: tuple[str, ...], value: object) -> dict[str, Any]:
    document: dict[str, Any] = {}
    table = document
    for part in path[:-1]:
        table = table.setdefault(part, {})
    table[path[-1]] = value
    return document


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    assert isinstance(value, dict)
    return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"


def sights(value: object) -> Iterator[str]:
    """The ways a value could show in a message: its text, its TOML, each scalar inside it."""
    if isinstance(value, bool):
        yield f"boolean {str(value).lower()}"
    elif isinstance(value, (int, float, str)):
        yield str(value)
        yield str(value)[:6]
    elif isinstance(value, list):
        for item in value:
            yield from sights(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from sights(item)


@pytest.mark.parametrize(
    ("path", "table"),
    SECRET_SETTINGS,
    ids=lambda p: ".".join(p) if isinstance(p, tuple) else str(p),
)
@given(value=WRONG_VALUES)
def test_no_problem_shows_a_secret_settings_value(
    path: tuple[str, ...], table: bool, value: object
) -> None:
    if not table and isinstance(value, str):
        value = [value]  # a string is the right type for a secret setting: wrap it
    if table and isinstance(value, dict):
        value = [value]  # a table is the right type for a table: wrap it
    table_line = f"[{'.'.join(path[:-1])}]\n" if len(path) > 1 else ""
    text = f"{table_line}{path[-1]} = {toml_value(value)}\n"
    outcome = evaluate([LayerSource("config.toml", text)])
    assert outcome.problems, text
    assert ".".join(path) in {p.key for p in outcome.problems}
    rendered = ConfigProblems(outcome.problems).render()
    for shown in sights(value):
        assert shown not in rendered, (text, rendered)


def test_the_schema_has_the_secrets_this_test_walks() -> None:
    keys = {".".join(path) for path, _ in SECRET_SETTINGS}
    assert {
        "keys.pkcs11.pin",
        "tpm.hierarchy_authorization.owner",
        "provisioning.connection_string",
        "provisioning.authentication.device_id_pk",
        "provisioning.authentication.device_id_pk.value",
        "agent.config.auth.password",
        "console.password_hash",
    } <= keys


@dataclasses.dataclass(frozen=True)
class Vault:
    """A section whose secrets have bounds, choices and a pattern: every check that shows values."""

    code: int = schema.setting(1, doc="", secret=True, min=0, max=9)
    level: Literal["low", "high"] = schema.setting("low", doc="", secret=True)
    word: str = schema.setting("ab", doc="", secret=True, pattern=r"[a-z]+")
    words: tuple[str, ...] = schema.setting((), doc="", secret=True)


@given(
    code=st.integers(10**6, 10**12),
    level=st.text(st.characters(codec="ascii", categories=("L",)), min_size=6).map(
        lambda text: MARK + text.lower()
    ),
    word=st.text(st.characters(codec="ascii", categories=("N",)), min_size=6).map(
        lambda text: MARK + text
    ),
)
def test_bounds_choices_and_patterns_never_show_a_secret(code: int, level: str, word: str) -> None:
    found: list[str] = []

    def report(key: str, message: str, hint: str | None) -> None:
        found.append(f"{key}: {message} ({hint})")

    _build_table(
        Vault, {"code": code, "level": level, "word": word, "words": [1234567]}, "", report
    )
    assert len(found) == 4
    text = "\n".join(found)
    for secret in (str(code), level, word, "1234567"):
        assert secret not in text
    assert text.count(schema.NOT_SHOWN) == 4


def test_a_key_given_in_place_of_its_table_is_not_shown(write) -> None:
    path = write(
        "config.toml",
        '[provisioning]\nsource = "manual"\niothub_hostname = "h"\ndevice_id = "d"\n'
        "[provisioning.authentication]\n"
        'device_id_pk = "Qz7SymmetricKeyGivenBareXXXXXXXXXXXXXXXXXXXXXXXX="\n',
    )
    (problem,) = validate_files(path).problems
    assert problem.key == "provisioning.authentication.device_id_pk"
    assert problem.message == f"expected a table, got a string ({schema.NOT_SHOWN})"
    assert "Qz7" not in problem.render()


@pytest.mark.parametrize(
    ("text", "key", "message"),
    [
        (
            '[provisioning]\nsource = "dps"\nid_scope = "0ne"\n[provisioning.attestation]\n'
            'registration_id = "r"\nsymmetric_key = { value = "Qz7!!not-base64" }\n',
            "provisioning.attestation.symmetric_key.value",
            "the key is empty or not base64",
        ),
        (
            '[provisioning]\nsource = "manual"\n'
            'connection_string = "HostName=h;DeviceId=d;SharedAccessKey=Qz7!!not-base64"\n',
            "provisioning.connection_string",
            "the SharedAccessKey of connection_string is not base64",
        ),
    ],
)
def test_a_symmetric_key_that_is_not_base64_is_refused_unseen(
    write, text: str, key: str, message: str
) -> None:
    (problem,) = validate_files(write("config.toml", text)).problems
    assert problem.key == key
    assert problem.message.startswith(message)
    assert "Qz7" not in problem.render()


def test_a_valid_symmetric_key_loads(write) -> None:
    config = load_config(
        write(
            "config.toml",
            '[provisioning]\nsource = "dps"\nid_scope = "0ne"\n[provisioning.attestation]\n'
            'registration_id = "r"\nsymmetric_key = { value = "c3ltbWV0cmljLXNlY3JldA==" }\n',
        )
    )
    assert config.provisioning.attestation is not None


def test_a_pin_value_in_a_uri_is_redacted_in_every_rendered_problem() -> None:
    problem = ConfigProblem(
        "config.toml", 3, "edge_ca.pk", 'cannot use "pkcs11:object=ca?pin-value=Qz7PIN"', "x"
    )
    assert "Qz7PIN" not in problem.render()
    assert "pin-value=<redacted>" in problem.render()
    error = ConfigProblems([problem])
    assert "Qz7PIN" not in error.render() and "Qz7PIN" not in error.message
    long_uri = "pkcs11:token=a-rather-long-token-label;object=ca?pin-value=Qz7PIN"
    outcome = evaluate([LayerSource("c.toml", f'[edge_ca]\npk = "{long_uri}"\ncert = 5\n')])
    assert "Qz7" not in ConfigProblems(outcome.problems).render()


# --- names that become paths -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[agent]\nname = "../../../tmp"\n', "agent.name"),
        ('[agent]\nname = "edgeAgent\\n"\n', "agent.name"),
        ('[agent]\nname = ""\n', "agent.name"),
        ('[certificates]\nhub_module = "../hub"\n', "certificates.hub_module"),
        ('[certificates.module_names]\n"../m" = ["m.local"]\n', "certificates.module_names.../m"),
    ],
)
def test_names_that_become_paths_follow_the_name_rule(write, text: str, key: str) -> None:
    (problem,) = validate_files(write("config.toml", text)).problems
    assert problem.key == key
    assert "is not a valid name" in problem.message
    assert "1-63 characters" in (problem.hint or "")


def test_a_board_name_follows_the_name_rule(write) -> None:
    board = write("board.toml", '[board]\nname = "../../etc/passwd"\n')
    (problem,) = validate_files(None, board).problems
    assert problem.key == "board.name"
    good = write("good.toml", '[board]\nname = "rpi4-tpm"\n')
    assert load_config(None, good).board.name == "rpi4-tpm"


@pytest.mark.parametrize("name", ["../sim", "sim/..", "sim\n", ".sim"])
def test_an_unsafe_board_name_is_unknown(name: str) -> None:
    (problem,) = validate_files(None, name if "/" not in name else name + "x").problems
    assert problem.key == "board"


# --- a file that holds secrets is its owner's alone ------------------------------------------

PIN = '[keys.pkcs11]\nmodule = "/usr/lib/libtoken.so"\ntoken_label = "t"\npin = "Qz7PIN"\n'


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o610])
def test_a_file_holding_a_secret_open_to_others_is_refused(write, mode: int) -> None:
    path = write("config.toml", PIN)
    path.chmod(mode)
    with pytest.raises(ConfigProblems) as caught:
        load_config(path)
    (problem,) = caught.value.problems
    assert (problem.file, problem.line, problem.key) == (str(path), 4, "keys.pkcs11.pin")
    assert f"mode {mode:04o}" in problem.message
    assert problem.hint == f"run `chmod 600 {path}`"
    assert "Qz7PIN" not in caught.value.render()


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_a_file_holding_a_secret_for_its_owner_alone_loads(write, mode: int) -> None:
    path = write("config.toml", PIN)
    path.chmod(mode)
    assert load_config(path).keys.pkcs11.pin == "Qz7PIN"


def test_a_file_without_secrets_may_be_read_by_all(write) -> None:
    path = write(
        "config.toml",
        '[logging]\nlevel = "debug"\n[edge_ca]\ncert = "file:///ca.pem"\npk = "pkcs11:object=ca"\n',
    )
    path.chmod(0o644)
    assert load_config(path).logging.level == "debug"


def test_a_drop_in_holding_a_secret_is_checked_on_its_own(write) -> None:
    main = write("etc/config.toml", '[logging]\nlevel = "debug"\n')
    main.chmod(0o644)
    drop_in = write(
        "etc/config.d/20-hub.toml",
        '[edge_ca]\ncert = "file:///ca.pem"\npk = "pkcs11:object=ca?pin-value=Qz7PIN"\n',
    )
    drop_in.chmod(0o644)
    (problem,) = validate_files(main).problems
    assert (problem.file, problem.key) == (str(drop_in), "edge_ca.pk")
    assert "Qz7PIN" not in problem.render()
    drop_in.chmod(0o600)
    assert validate_files(main).problems == ()


def test_the_mode_is_that_of_the_file_read(write, monkeypatch: pytest.MonkeyPatch) -> None:
    """The mode comes from fstat on the opened file, so a swap after the check cannot matter."""
    path = write("config.toml", PIN)
    real_fstat = os.fstat
    opened: list[int] = []

    def fstat(fd: int) -> os.stat_result:
        opened.append(fd)
        found = list(real_fstat(fd))
        found[0] |= 0o044
        return os.stat_result(found)

    monkeypatch.setattr(os, "fstat", fstat)
    (problem,) = validate_files(path).problems
    assert problem.key == "keys.pkcs11.pin" and "mode 0644" in problem.message
    assert opened


@pytest.mark.parametrize(
    ("document", "keys"),
    [
        ({"keys": {"pkcs11": {"pin": 1234}}}, ["keys.pkcs11.pin"]),
        (
            {"provisioning": {"attestation": {"symmetric_key": {"value": "a2V5"}}}},
            ["provisioning.attestation.symmetric_key.value"],
        ),
        ({"agent": {"env": {"HUB": "HostName=h;SharedAccessKey=a2V5"}}}, ["agent.env.HUB"]),
        ({"agent": {"env": {"A": "1"}}, "hostname": "gw"}, []),
        ({"keys": {"pkcs11": {"pin_file": "/etc/pin"}}}, []),
        ({"unknown": {"pin": "x"}}, []),
    ],
)
def test_secret_keys_of_a_layer(document: dict[str, Any], keys: list[str]) -> None:
    assert secret_keys(document) == keys


def test_an_unusable_console_password_hash_is_named_without_its_value(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[console]\npassword_hash = "scrypt$n=3$SECRETSALT$SECRETDIGEST"\n')
    config.chmod(0o600)
    with pytest.raises(ConfigError) as refused:
        load_config(config)
    shown = refused.value.render()
    assert f"{config}:2: console.password_hash: not a usable hash" in shown
    assert "SECRET" not in shown
