"""The one name rule for every name that becomes a path, a container name or a socket directory.

A module name is 1 to 63 characters from `A-Z a-z 0-9 _ . -`, starting with a letter or a digit,
matched against the whole text (a trailing newline is not allowed). An identity may carry IoT
Edge's `$` prefix for system modules (`$edgeAgent`); the path it becomes never does. Callers turn
a refusal into their own error (a config violation, a 400) naming the field.
"""

from __future__ import annotations

import re

MAX_MODULE_NAME = 63
MODULE_NAME_RULE = (
    f"1-{MAX_MODULE_NAME} characters from A-Z a-z 0-9 _ . -, starting with a letter or digit"
)

_MODULE_NAME = re.compile(rf"[A-Za-z0-9][A-Za-z0-9_.-]{{0,{MAX_MODULE_NAME - 1}}}")


def is_module_name(value: object) -> bool:
    """True if `value` is a module name by the whole-text rule above."""
    return isinstance(value, str) and _MODULE_NAME.fullmatch(value) is not None


def is_module_id(value: object) -> bool:
    """True if `value` is a module name, or one with IoT Edge's `$` system prefix."""
    return isinstance(value, str) and is_module_name(value.removeprefix("$"))
