"""build.py's command line: which command runs, with which options, and what goes to pytest."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from buildkit.testsuite import pytest_arguments

REPO = Path(__file__).resolve().parents[3]


def load_build_py() -> ModuleType:
    # Loaded from its path: the name `build` could resolve to this test directory.
    spec = importlib.util.spec_from_file_location("build_py", REPO / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build_py = load_build_py()


def test_build_defaults_to_the_sim_board_in_standalone_mode() -> None:
    args, rest = build_py.parse(["build"])
    assert (args.command, args.board, args.mode, rest) == ("build", "sim", "standalone", [])


def test_build_and_bundle_take_a_board() -> None:
    assert build_py.parse(["build", "--board", "rpi4-tpm", "--mode", "onefile"])[0].mode == (
        "onefile"
    )
    args, _ = build_py.parse(["bundle", "--board", "rpi4-tpm"])
    assert (args.command, args.board) == ("bundle", "rpi4-tpm")


@pytest.mark.parametrize("command", ["test", "run"])
def test_test_and_run_pass_unknown_arguments_through(command: str) -> None:
    args, rest = build_py.parse([command, "-k", "console", "-x", "tests/unit"])
    assert args.command == command
    assert rest == ["-k", "console", "-x", "tests/unit"]


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["setup", "--verbose"],
        ["build", "--board"],
        ["build", "--mode", "fast"],
        ["bundle", "--mode", "onefile"],  # a bundle ships the standalone program's image only
        ["sim"],
        ["sim", "restart"],
        ["sim", "status", "now"],
        ["deploy"],
    ],
)
def test_anything_else_is_a_usage_error(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        build_py.parse(argv)
    assert exited.value.code == 2
    assert "usage: build.py" in capsys.readouterr().err


@pytest.mark.parametrize("action", ["start", "stop", "status"])
def test_sim_actions(action: str) -> None:
    assert build_py.parse(["sim", action])[0].action == action


def test_pytest_runs_the_whole_suite_unless_a_path_is_named(tmp_path: Path) -> None:
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_x.py").touch()
    assert pytest_arguments([], tmp_path) == ["tests"]
    assert pytest_arguments(["-k", "console", "-x"], tmp_path) == ["tests", "-k", "console", "-x"]
    assert pytest_arguments(["tests/test_x.py", "-x"], tmp_path) == ["tests/test_x.py", "-x"]
    assert pytest_arguments(["tests/test_x.py::test_y"], tmp_path) == ["tests/test_x.py::test_y"]
    assert pytest_arguments(["tests/missing.py"], tmp_path) == ["tests", "tests/missing.py"]
