"""Layering in order, config.d, unreadable files, syntax errors and IoT Edge key names."""

from __future__ import annotations

from pathlib import Path

import pytest

from firmware.config import ConfigProblems, load_config, validate_files
from firmware.config.loader import LayerSource, evaluate


def test_layers_override_in_order_and_tables_merge(write) -> None:
    board = write(
        "board.toml", '[board]\nname = "b"\n[console]\ndevice = "/dev/ttyS0"\nbaud = 9600\n'
    )
    main = write(
        "etc/config.toml", '[console]\nbaud = 57600\n[agent.env]\nA = "main"\nB = "main"\n'
    )
    write("etc/config.d/20-late.toml", '[agent.env]\nA = "late"\n[console]\nprompt = "late> "\n')
    write("etc/config.d/10-early.toml", '[agent.env]\nA = "early"\nC = "early"\n')
    write("etc/config.d/.10-editor-swap.toml", "this is not toml\n")
    write("etc/config.d/notes.txt", "ignored\n")
    config = load_config(main, board)
    assert config.console.device == "/dev/ttyS0"  # board
    assert config.console.baud == 57600  # config.toml over board
    assert config.console.prompt == "late> "  # config.d
    assert config.agent.env == {"A": "late", "B": "main", "C": "early"}
    assert config.origins["console.baud"] == f"{main}:2"
    assert config.origins["agent.env.A"] == f"{main.parent}/config.d/20-late.toml:2"
    assert config.origins["console.device"] == f"{board}:4"
    assert "logging.level" not in config.origins


def test_arrays_and_scalars_replace_whole(write) -> None:
    board = write(
        "b.toml", '[board]\nname = "b"\n[board.devices]\ni2c = ["/dev/i2c-1", "/dev/i2c-2"]\n'
    )
    later = write("c.toml", '[board]\nname = "c"\n[board.devices]\ni2c = ["/dev/i2c-3"]\n')
    outcome = evaluate(
        [
            LayerSource(str(board), board.read_text(), board=True),
            LayerSource(str(later), later.read_text(), board=True),
        ]
    )
    assert outcome.config is not None
    assert outcome.config.board.devices.i2c == ("/dev/i2c-3",)


def test_problems_in_several_files_are_placed_in_each(write) -> None:
    main = write("etc/config.toml", "[console]\nbaud = 1\n")
    drop_in = write("etc/config.d/50-x.toml", '\n\n[logging]\nlevel = "loud"\n')
    problems = validate_files(main).problems
    assert [(p.file, p.line, p.key) for p in problems] == [
        (str(main), 2, "console.baud"),
        (str(drop_in), 4, "logging.level"),
    ]


def test_a_later_layer_fixing_a_value_clears_the_problem(write) -> None:
    main = write("etc/config.toml", '[logging]\nlevel = "loud"\n')
    write("etc/config.d/10-fix.toml", '[logging]\nlevel = "debug"\n')
    assert load_config(main).logging.level == "debug"


def test_missing_config_file_is_one_clear_problem(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "config.toml"
    with pytest.raises(ConfigProblems) as caught:
        load_config(missing)
    assert caught.value.render() == (
        f"{missing}: config file not found (create it or give --config FILE)"
    )
    assert caught.value.message == f"{missing}: config file not found"


def test_without_a_config_file_the_defaults_apply(private_system: Path) -> None:
    assert not private_system.exists()
    config = load_config(None)
    assert config.paths.data_dir == "/var/lib/edgekeeper"
    assert config.board.name == "generic"


def test_the_default_config_file_is_read_when_present(private_system: Path) -> None:
    private_system.parent.mkdir(parents=True)
    private_system.write_text('hostname = "from-etc"\n')
    (private_system.parent / "config.d").mkdir()
    (private_system.parent / "config.d" / "1.toml").write_text('[logging]\nformat = "json"\n')
    config = load_config(None)
    assert (config.hostname, config.logging.format) == ("from-etc", "json")


def test_a_directory_or_non_utf8_file_is_named(write, tmp_path: Path) -> None:
    (tmp_path / "dir.toml").mkdir()
    (problem,) = validate_files(tmp_path / "dir.toml").problems
    assert problem.message == "config file is a directory"
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b'a = "x"\nb = "\xff"\n')
    (problem,) = validate_files(binary).problems
    assert (problem.line, problem.message) == (2, "config file is not UTF-8 text")


def test_an_unreadable_file_is_named(write, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write("config.toml", "")

    def refuse(self: Path, *args: object) -> bytes:  # root reads any file: refuse like 0000
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "open", refuse)
    (problem,) = validate_files(path).problems
    assert problem.render() == (
        f"{path}: config file cannot be read: Permission denied "
        "(check its owner and mode; the daemon reads it as root)"
    )


def test_syntax_errors_carry_their_line_and_other_files_are_still_checked(write) -> None:
    main = write("etc/config.toml", 'hostname = "gw"\n\n[console\nbaud = 9600\n')
    write("etc/config.d/10.toml", "[console]\nbaud = 3\n")
    problems = validate_files(main).problems
    assert problems[0].file == str(main)
    assert problems[0].line == 3
    assert problems[0].message.startswith("TOML syntax error: ")
    assert "line" not in problems[0].message
    assert problems[0].hint.startswith("fix the syntax at column ")
    assert problems[1].key == "console.baud"
    duplicate = write("dup.toml", "a = 1\na = 2\n")
    (problem,) = validate_files(duplicate).problems
    assert problem.line == 2


def test_moby_runtime_is_the_runtime_section(write) -> None:
    config = load_config(
        write("config.toml", '[moby_runtime]\nuri = "unix:///x.sock"\nnetwork = "n"\n')
    )
    assert (config.runtime.uri, config.runtime.network) == ("unix:///x.sock", "n")
    assert config.origins["runtime.uri"].endswith("config.toml:2")
    both = write("both.toml", '[runtime]\nnetwork = "a"\n[moby_runtime]\nnetwork = "b"\n')
    (problem,) = validate_files(both).problems
    assert (problem.line, problem.key) == (3, "moby_runtime")
    assert problem.message == "both runtime and its alias moby_runtime are set"


def test_a_moby_runtime_mistake_is_placed_where_it_was_written(write) -> None:
    path = write("config.toml", "\n[moby_runtime]\nuri = 7\n")
    (problem,) = validate_files(path).problems
    assert (problem.line, problem.key) == (3, "runtime.uri")


def test_iotedge_renamed_keys_load(write) -> None:
    text = 'homedir = "/var/lib/aziot/edged"\n[aziot_keys]\npkcs11_lib_path = "/usr/lib/p11.so"\n'
    text += '[keys.pkcs11]\ntoken_label = "t"\n'
    text += "[edge_ca]\nauto_generated_edge_ca_expiry_days = 30\n"
    config = load_config(write("config.toml", text))
    assert config.paths.data_dir == "/var/lib/aziot/edged"
    assert config.keys.pkcs11.module == "/usr/lib/p11.so"
    assert config.edge_ca.auto_generated_expiry_days == 30
    assert config.origins["keys.pkcs11.module"].endswith("config.toml:3")


def test_board_section_is_refused_in_config_files(write) -> None:
    path = write("config.toml", '[board]\nname = "mine"\n')
    (problem,) = validate_files(path).problems
    assert (problem.line, problem.key) == (1, "board")
    assert "belongs in a board file" in problem.message


def test_evaluate_is_sans_io() -> None:
    outcome = evaluate([LayerSource("mem.toml", '[logging]\nlevel = "debug"\n')])
    assert outcome.config is not None
    assert outcome.config.logging.level == "debug"
    assert outcome.layers == ("mem.toml",)
