"""Validation: every problem at once, each with its file, line, key and a hint."""

from __future__ import annotations

from pathlib import Path

import pytest

from firmware.config import ConfigProblems, load_config, validate_files
from firmware.errors import ConfigError

MANY_MISTAKES = """\
hostnme = "gw"

[logging]
level = "verbose"
format = "jsn"

[console]
baud = 10

[runtime]
uri = 5

[watchdog]
max_retries = "forever"

[keys]
default_backend = "hsm"
"""


def problems_of(path: Path, board: str | None = None) -> list[tuple[int | None, str, str]]:
    outcome = validate_files(path, board)
    assert outcome.config is None
    return [(p.line, p.key, p.message) for p in outcome.problems]


def test_every_problem_is_reported_at_once_with_its_line(write) -> None:
    path = write("config.toml", MANY_MISTAKES)
    with pytest.raises(ConfigProblems) as caught:
        load_config(path)
    error = caught.value
    assert isinstance(error, ConfigError)
    placed = [(p.file, p.line, p.key) for p in error.problems]
    assert placed == [
        (str(path), 1, "hostnme"),
        (str(path), 4, "logging.level"),
        (str(path), 5, "logging.format"),
        (str(path), 8, "console.baud"),
        (str(path), 11, "runtime.uri"),
        (str(path), 14, "watchdog.max_retries"),
        (str(path), 17, "keys.default_backend"),
    ]
    rendered = error.render().splitlines()
    assert rendered[0] == "7 configuration problems:"
    assert rendered[1] == f"{path}:1: hostnme: unknown key (did you mean 'hostname'?)"
    assert (
        rendered[5] == f'{path}:11: runtime.uri: expected a string, got integer 5 (quote it: "...")'
    )


def test_unknown_keys_suggest_the_closest_known_key(write) -> None:
    path = write(
        "config.toml", '[provisioning]\nsource = "dps"\nid_scop = "0ne"\n[agnet]\nname = "a"\n'
    )
    problems = validate_files(path).problems
    hints = {p.key: p.hint for p in problems}
    assert hints["provisioning.id_scop"] == "did you mean 'id_scope'?"
    assert hints["agnet"] == "did you mean 'agent'?"
    far = write("far.toml", "zzzz = 1\n")
    (problem,) = validate_files(far).problems
    assert problem.hint == "remove it, or check its spelling"


def test_a_bad_choice_suggests_the_closest_choice(write) -> None:
    path = write("config.toml", '[provisioning]\nsource = "manul"\n')
    (problem,) = validate_files(path).problems
    assert problem.message == 'string "manul" is not allowed'
    assert problem.hint == 'did you mean "manual"? Choices: "none", "manual", "dps"'


@pytest.mark.parametrize(
    ("text", "key", "message"),
    [
        ("[console]\nbaud = 5000000\n", "console.baud", "5000000 is out of range"),
        ("[console]\nbaud = true\n", "console.baud", "expected an integer, got boolean true"),
        ("[console]\nbaud = 1.5\n", "console.baud", "expected an integer, got float 1.5"),
        ('[console]\nbaud = "9600"\n', "console.baud", 'expected an integer, got string "9600"'),
        ("[watchdog]\nmax_retries = 0\n", "watchdog.max_retries", "0 is out of range"),
        ("[agent.config]\ncreateOptions = 1\n", "agent.config.createOptions", "expected a table"),
        ("logging = 3\n", "logging", "expected a table, got integer 3"),
        (
            "[agent.env]\nX = [1]\n",
            "agent.env.X",
            "expected a string, an integer, a number or true or false",
        ),
        ("[keys.backends]\ndevice-id = 'rom'\n", "keys.backends.device-id", 'string "rom" is not'),
        (
            "[image_garbage_collection]\ncleanup_time = '25:00'\n",
            "image_garbage_collection.cleanup_time",
            '"25:00" has the wrong form',
        ),
        ("[paths]\ndata_dir = 'var/lib'\n", "paths.data_dir", "data_dir must be an absolute path"),
        ("[console]\ndevice = 'ttyS0'\n", "console.device", 'console device "ttyS0" is not'),
        ("[console]\ndevice = 'loop://'\n", "console.device", "loop:// sends the console's own"),
        ("[console]\ndevice = 'spy:///x'\n", "console.device", '"spy:///x" is not a'),
        ("[console]\ndevice = 'tis-i2c:///x'\n", "console.device", '"tis-i2c:///x" is a TPM'),
        ("[console]\ndevice = 'serial://ttyS0'\n", "console.device", 'device URL "serial://'),
        ("[tpm]\ndevice = 'i2c:///dev/i2c-1'\n", "tpm.device", '"i2c:///dev/i2c-1" is not a'),
        ("[tpm]\ndevice = 'tis-i2c:///x?adr=1'\n", "tpm.device", 'device URL "tis-i2c'),
        ("[tpm]\ntcti = 'swtpm:port=x'\n", "tpm.device", 'TCTI "swtpm:port=x": port "x"'),
        ("[tpm]\ndevice = 'device'\ntcti = 'device'\n", "tpm.tcti", "both device and its alias"),
        ("[runtime]\nuri = 'tcp://1.2.3.4:2375'\n", "runtime.uri", "the engine is reached over"),
        ("[connect]\nworkload_uri = 'fd://x'\n", "connect.workload_uri", '"fd://x" is not a unix'),
    ],
)
def test_wrong_values_are_named(write, text: str, key: str, message: str) -> None:
    path = write("config.toml", text)
    (problem,) = validate_files(path).problems
    assert problem.key == key
    assert problem.message.startswith(message), problem.message
    assert problem.hint
    assert problem.line is not None


def test_watchdog_takes_an_integer_or_infinite(write) -> None:
    assert load_config(write("a.toml", "[watchdog]\nmax_retries = 3\n")).watchdog.max_retries == 3
    infinite = load_config(write("b.toml", '[watchdog]\nmax_retries = "infinite"\n'))
    assert infinite.watchdog.max_retries == "infinite"


def test_manual_provisioning_needs_a_hub_and_a_device(write) -> None:
    path = write("config.toml", '[provisioning]\nsource = "manual"\n')
    problems = validate_files(path).problems
    assert [(p.line, p.key) for p in problems] == [
        (1, "provisioning.iothub_hostname"),
        (1, "provisioning.device_id"),
        (1, "provisioning.authentication"),
    ]
    assert "or connection_string" in problems[0].message


def test_manual_provisioning_with_a_connection_string_is_complete(write) -> None:
    text = (
        '[provisioning]\nsource = "manual"\n'
        'connection_string = "HostName=h.azure-devices.net;DeviceId=d;SharedAccessKey=a2V5"\n'
    )
    config = load_config(write("config.toml", text))
    assert config.provisioning.connection_string.startswith("HostName=")
    broken = write("broken.toml", '[provisioning]\nsource = "manual"\nconnection_string = "x"\n')
    (problem,) = validate_files(broken).problems
    assert (problem.line, problem.key) == (3, "provisioning.connection_string")


def test_key_material_needs_exactly_one_of_value_uri_or_key(write) -> None:
    text = (
        '[provisioning]\nsource = "dps"\nid_scope = "0ne00000000"\n'
        '[provisioning.attestation]\nmethod = "symmetric_key"\nregistration_id = "r"\n'
        'symmetric_key = { value = "a2V5", uri = "file:///k" }\n'
    )
    (problem,) = validate_files(write("config.toml", text)).problems
    assert (problem.line, problem.key) == (7, "provisioning.attestation.symmetric_key.value")
    assert problem.message == "give exactly one of value, uri or key"


def test_dps_rules(write) -> None:
    path = write("config.toml", '[provisioning]\nsource = "dps"\n')
    keys = [p.key for p in validate_files(path).problems]
    assert keys == ["provisioning.id_scope", "provisioning.attestation"]
    x509 = write(
        "x509.toml",
        '[provisioning]\nsource = "dps"\nid_scope = "0ne"\n'
        '[provisioning.attestation]\nmethod = "x509"\n',
    )
    keys = [p.key for p in validate_files(x509).problems]
    assert keys == [
        "provisioning.attestation.identity_cert",
        "provisioning.attestation.identity_pk",
    ]


def test_required_keys_of_an_optional_table(write) -> None:
    path = write("config.toml", '[agent.config.auth]\nusername = "u"\n')
    problems = validate_files(path).problems
    assert {p.key for p in problems} == {
        "agent.config.auth.serveraddress",
        "agent.config.auth.password",
    }
    assert all(p.message == "required key is missing" and p.line == 1 for p in problems)


def test_pkcs11_backend_needs_a_module(write) -> None:
    path = write(
        "config.toml", '[keys]\ndefault_backend = "file"\n[keys.backends]\nedge-ca = "pkcs11"\n'
    )
    (problem,) = validate_files(path).problems
    assert problem.key == "keys.pkcs11.module"
    assert problem.line == 1  # nearest table set in the file: [keys]


def test_a_broken_section_is_not_also_blamed_for_its_cross_field_rules(write) -> None:
    path = write("config.toml", '[provisioning]\nsource = "manul"\n')
    assert [p.key for p in validate_files(path).problems] == ["provisioning.source"]


def test_placeholders_follow_the_paths_section(write) -> None:
    config = load_config(write("config.toml", '[paths]\nrun_dir = "/tmp/rt"\ndata_dir = "/d"\n'))
    assert config.listen.management_uri == "unix:///tmp/rt/mgmt.sock"
    assert config.connect.workload_uri == "unix:///tmp/rt/workload.sock"
    assert config.keys.file.dir == "/d/keys"
    explicit = load_config(write("b.toml", '[listen]\nmanagement_uri = "unix:///x/m.sock"\n'))
    assert explicit.listen.management_uri == "unix:///x/m.sock"


def test_arrays_are_checked_item_by_item(write) -> None:
    board = write("board.toml", '[board]\nname = "b"\n[board.devices]\ni2c = ["/dev/i2c-1", 2]\n')
    (problem,) = validate_files(None, board).problems
    assert (problem.file, problem.line, problem.key) == (str(board), 4, "board.devices.i2c.1")
    assert problem.message == "expected a string, got integer 2"
    scalar = write("scalar.toml", '[board.devices]\nserial = "/dev/ttyS0"\n')
    (problem,) = validate_files(None, scalar).problems
    assert problem.message == 'expected an array, got string "/dev/ttyS0"'


def test_config_is_frozen_and_typed(write) -> None:
    config = load_config(write("config.toml", "[console]\n"))
    assert config.console.baud == 115200
    assert config.hostname
    with pytest.raises(AttributeError):
        config.console = None  # type: ignore[misc]
