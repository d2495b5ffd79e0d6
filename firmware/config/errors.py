"""Configuration errors: every problem found in the config and board files, reported at once.

A problem's text is the last stop before a person sees it (`config validate`, the daemon's
start-up error, its log on reload), so rendering applies `firmware.logs.redact`: a secret that
slipped into a message (a `pin-value=` in a URI, a `SharedAccessKey=`) is shown as `<redacted>`.
The validator itself never puts a secret setting's value into a message.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from firmware.config.schema import REDACTED
from firmware.errors import ConfigError
from firmware.redaction import redact


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong with the configuration, placed as precisely as the sources allow.

    `file` is the file the offending value came from (None when no file is involved, e.g. an
    unknown board name), `line` its 1-based line when known, `key` the dotted key.
    """

    file: str | None
    line: int | None
    key: str
    message: str
    hint: str | None = None

    def located(self) -> str:
        """`FILE:LINE: key: message`, leaving out the parts that are not known."""
        place = ""
        if self.file is not None:
            place = f"{self.file}:{self.line}: " if self.line is not None else f"{self.file}: "
        head = f"{place}{self.key}: " if self.key else place
        return redact(f"{head}{self.message}", REDACTED)

    def render(self) -> str:
        """`FILE:LINE: key: message (hint)`."""
        if self.hint:
            return f"{self.located()} ({redact(self.hint, REDACTED)})"
        return self.located()


class ConfigProblems(ConfigError):
    """The configuration cannot be used; `problems` lists everything wrong, in file order."""

    def __init__(self, problems: Sequence[ConfigProblem]) -> None:
        self.problems = tuple(problems)
        if len(self.problems) == 1:
            only = self.problems[0]
            hint = None if only.hint is None else redact(only.hint, REDACTED)
            super().__init__(only.located(), hint=hint)
        else:
            super().__init__(
                f"{len(self.problems)} configuration problems",
                hint="fix each one listed; `edgekeeper config validate` checks again",
            )

    def render(self) -> str:
        """One line per problem; a single problem is a single line."""
        if len(self.problems) == 1:
            return self.problems[0].render()
        lines = [p.render() for p in self.problems]
        return f"{len(self.problems)} configuration problems:\n" + "\n".join(lines)
