"""Board files: every shipped board validates; resolution by path, name, env and compiled board."""

from __future__ import annotations

from pathlib import Path

import pytest

from firmware.config import boards as board_lookup
from firmware.config import list_boards, load_config, validate_files

SHIPPED = sorted(p for p in board_lookup.SOURCE_BOARDS.glob("*.toml"))
REAL_BOARDS = ("sim", "rpi4-tpm", "imx8mm-se050")


def test_the_required_boards_ship() -> None:
    names = {p.stem for p in SHIPPED}
    assert set(REAL_BOARDS) <= names


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_every_shipped_board_validates(path: Path) -> None:
    outcome = validate_files(None, path.stem)
    assert outcome.problems == (), [p.render() for p in outcome.problems]
    assert outcome.layers == (str(path),)


@pytest.mark.parametrize("name", REAL_BOARDS)
def test_product_boards_are_named_after_their_file(name: str) -> None:
    assert load_config(None, name).board.name == name


def test_sim_board_describes_this_machine() -> None:
    config = load_config(None, "sim")
    assert config.board.arch == "x86_64"
    assert config.console.device == "pty"
    assert config.tpm.device == "swtpm://127.0.0.1:2321"
    assert config.keys.pkcs11.module == "/usr/lib/softhsm/libsofthsm2.so"
    assert config.keys.pkcs11.token_label == "edgekeeper"
    assert config.runtime.uri == "unix:///run/edgekeeper-sim/docker.sock"


def test_gateway_boards_name_their_devices() -> None:
    rpi = load_config(None, "rpi4-tpm")
    assert (rpi.board.arch, rpi.console.device, rpi.console.baud) == (
        "aarch64",
        "/dev/ttyS0",
        115200,
    )
    assert rpi.tpm.device == "device:/dev/tpmrm0"
    assert rpi.board.devices.tpm == "/dev/tpmrm0"
    assert "/dev/i2c-1" in rpi.board.devices.i2c
    imx = load_config(None, "imx8mm-se050")
    assert (imx.board.arch, imx.console.device) == ("aarch64", "/dev/ttymxc1")
    assert imx.keys.default_backend == "pkcs11"
    assert imx.keys.pkcs11.module == "/usr/lib/libsss_pkcs11.so"
    assert imx.board.devices.serial == ("/dev/ttymxc1",)


def test_unknown_board_lists_the_known_ones() -> None:
    outcome = validate_files(None, "rpi5")
    (problem,) = outcome.problems
    assert problem.render().startswith("board: unknown board 'rpi5' (known boards: ")
    for name in REAL_BOARDS:
        assert name in problem.hint


def test_board_names_cannot_walk_out_of_the_boards_folder() -> None:
    (problem,) = validate_files(None, "..").problems
    assert problem.message == "unknown board '..'"


def test_board_by_path_and_missing_board_path(write, tmp_path: Path) -> None:
    path = write("my-board.toml", '[board]\nname = "mine"\narch = "armv7l"\n')
    assert load_config(None, path).board.arch == "armv7l"
    assert load_config(None, str(path)).board.name == "mine"
    (problem,) = validate_files(None, tmp_path / "gone.toml").problems
    assert (problem.file, problem.message) == (str(tmp_path / "gone.toml"), "board file not found")


def test_board_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEKEEPER_BOARD", "rpi4-tpm")
    assert load_config(None).board.name == "rpi4-tpm"
    assert load_config(None, "sim").board.name == "sim"  # --board wins


def test_compiled_board_is_used_by_default_and_by_its_name(private_system: Path) -> None:
    compiled = board_lookup.COMPILED_BOARD
    compiled.parent.mkdir(parents=True, exist_ok=True)
    compiled.write_text('[board]\nname = "factory"\narch = "riscv64"\n')
    assert load_config(None).board.arch == "riscv64"
    assert validate_files(None).layers == ("<board factory built into the binary>",)
    assert load_config(None, "factory").board.arch == "riscv64"
    assert load_config(None, "sim").board.name == "sim"
    listed = {b.name: b for b in list_boards()}
    assert listed["factory"].compiled
    assert listed["factory"].arch == "riscv64"
    assert not listed["sim"].compiled


def test_without_any_board_there_is_no_board_layer() -> None:
    outcome = validate_files(None, None)
    assert outcome.layers == ()
    assert outcome.config.board.name == "generic"


def test_board_file_problems_are_placed_in_the_board_file(write) -> None:
    path = write("bad-board.toml", '[board]\nname = "bad"\nmemory_budget_mb = 1\n[tpm]\ntcti = 3\n')
    problems = validate_files(None, path).problems
    assert [(p.file, p.line, p.key) for p in problems] == [
        (str(path), 3, "board.memory_budget_mb"),
        (str(path), 5, "tpm.device"),
    ]


def test_list_boards_describes_each() -> None:
    listed = {b.name: b for b in list_boards()}
    assert listed["rpi4-tpm"].arch == "aarch64"
    assert listed["imx8mm-se050"].description.startswith("NXP i.MX 8M Mini")
    assert listed["sim"].path == board_lookup.SOURCE_BOARDS / "sim.toml"
