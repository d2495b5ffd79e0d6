"""docs/security.md names the test that proves each control: every test it names exists, and
every attack in tests/security/ is named by some threat (no control without a proof, no proof
without a threat)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "security.md"
SECURITY_TESTS = REPO / "tests" / "security"
# `file.py::name` or `::name` (the file of the reference before it); a bare file path in a cell
# starts the file for the `::name`s after it.
_REFERENCE = re.compile(r"`((?:tests/[\w/]+/)?(test_\w+\.py))?::(test_\w+)")


def _tests_in(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.name.startswith("test_")
    }


def _named_tests() -> list[tuple[Path, str]]:
    named: list[tuple[Path, str]] = []
    for line in DOC.read_text().splitlines():
        current: Path | None = None
        for match in _REFERENCE.finditer(line):
            given, file_name, test = match.group(1), match.group(2), match.group(3)
            if given:
                current = REPO / given if "/" in given else SECURITY_TESTS / file_name
            assert current is not None, f"docs/security.md: ::{test} has no file before it"
            named.append((current, test))
    return named


def test_every_test_the_threat_model_names_exists() -> None:
    named = _named_tests()
    assert len(named) > 20
    missing = [
        f"{path.relative_to(REPO)}::{test}"
        for path, test in named
        if not path.is_file() or test not in _tests_in(path)
    ]
    assert missing == []


def test_every_attack_in_tests_security_proves_a_threat() -> None:
    named = {(path.name, test) for path, test in _named_tests()}
    unnamed = [
        f"{path.name}::{test}"
        for path in sorted(SECURITY_TESTS.glob("test_*.py"))
        if path.name != "test_gateway_harness.py"
        for test in sorted(_tests_in(path))
        if (path.name, test) not in named
    ]
    assert unnamed == [], "name these in docs/security.md's threat tables"
