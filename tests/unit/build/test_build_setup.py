"""Set-up: the venv gets every declared dependency and is reinstalled when they change; boards
of another architecture are refused; failed commands end the build with one line."""

from __future__ import annotations

import tomllib

import pytest

from buildkit.boards import board_file, runs_on
from buildkit.ffi import COMPILE_PROGRAM
from buildkit.log import BuildError
from buildkit.paths import ROOT
from buildkit.shell import run
from buildkit.venv import requirements, venv_key


def test_venv_gets_runtime_build_test_and_dev_dependencies() -> None:
    names = [
        requirement.split(">")[0].split("<")[0].split("=")[0].strip()
        for requirement in requirements(tomllib.loads((ROOT / "pyproject.toml").read_text()))
    ]
    for needed in ("cffi", "nuitka", "pytest", "hypothesis", "mypy", "import-linter", "ruff"):
        assert needed in names


def test_requirements_are_the_dependencies_then_the_extras_in_order() -> None:
    project = {
        "project": {
            "dependencies": ["a"],
            "optional-dependencies": {"dev": ["d"], "test": ["t"], "docs": ["x"], "build": ["b"]},
        }
    }
    assert requirements(project) == ["a", "b", "t", "d"]


def test_a_changed_requirement_or_interpreter_reinstalls_the_venv() -> None:
    key = venv_key(["pytest>=8"], "version = 3.11.2\n")
    assert venv_key(["pytest>=8"], "version = 3.11.2\n") == key
    assert venv_key(["pytest>=8", "mypy>=1.11"], "version = 3.11.2\n") != key
    assert venv_key(["pytest>=9"], "version = 3.11.2\n") != key
    assert venv_key(["pytest>=8"], "version = 3.12.1\n") != key


@pytest.mark.parametrize(
    ("arch", "machine", "ok"),
    [
        ("x86_64", "x86_64", True),
        ("amd64", "x86_64", True),
        ("arm64", "aarch64", True),
        ("aarch64", "aarch64", True),
        ("armv7", "armv7l", True),
        ("aarch64", "x86_64", False),
        ("x86_64", "aarch64", False),
    ],
)
def test_a_board_builds_only_on_its_architecture(arch: str, machine: str, ok: bool) -> None:
    assert runs_on(arch, machine) is ok


def test_an_unknown_board_names_the_known_ones() -> None:
    with pytest.raises(BuildError, match=r"boards/nope\.toml .*known boards: .*sim"):
        board_file("nope")


def test_failed_and_missing_programs_are_build_errors() -> None:
    assert run(["sh", "-c", "echo out"], capture=True).stdout == "out\n"
    assert run(["sh", "-c", "exit 3"], check=False).returncode == 3
    with pytest.raises(BuildError, match=r"^`sh -c exit 3` exited 3$"):
        run(["sh", "-c", "exit 3"])
    with pytest.raises(BuildError, match=r"^/nonexistent/tool: not found$"):
        run(["/nonexistent/tool"])


def test_the_ffi_compile_program_is_python() -> None:
    compile(COMPILE_PROGRAM.format(script="/x/y_build.py", workdir="/tmp/w"), "ffi", "exec")
