"""What a command shows and how it ends."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CommandResult:
    """The text a command shows and its exit code (0 ok, 1 failed, 2 usage error)."""

    text: str
    exit_code: int = 0
