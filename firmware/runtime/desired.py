"""The desired set of modules, kept in the state store so a reboot with no network restores it.

One document, `modules`, holds every module's spec in the management API's shape. Changes are
whole-document replacements written atomically, so a deployment is applied all at once or not at
all. The agent's spec comes from `[agent]` in the config and is not stored here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from firmware.errors import StateError
from firmware.runtime.spec import ModuleSpec
from firmware.store.state import StateStore

DOCUMENT = "modules"


@dataclass(frozen=True)
class ModuleChange:
    """One line of a deployment diff."""

    name: str
    change: str  # "add", "update", "remove"
    before: ModuleSpec | None
    after: ModuleSpec | None


class DesiredModules:
    """Load and replace the stored module specs (blocking: call through the executor)."""

    def __init__(self, store: StateStore) -> None:
        self._store = store

    def load(self) -> dict[str, ModuleSpec]:
        doc = self._store.get(DOCUMENT) or {"modules": {}}
        specs: dict[str, ModuleSpec] = {}
        for name, item in doc.get("modules", {}).items():
            try:
                specs[name] = ModuleSpec.from_api(item)
            except Exception as exc:
                raise StateError(
                    f"stored spec of module {name!r} in {self._store.path(DOCUMENT)} is unusable: "
                    f"{exc}",
                    hint="redeploy the module with `edgekeeper deploy`",
                ) from exc
        return specs

    def save(self, specs: Mapping[str, ModuleSpec]) -> None:
        doc = {"modules": {name: spec.to_api() for name, spec in sorted(specs.items())}}
        self._store.put(DOCUMENT, doc)


def diff(before: Mapping[str, ModuleSpec], after: Mapping[str, ModuleSpec]) -> list[ModuleChange]:
    """What applying `after` over `before` changes, module by module, in name order."""
    changes: list[ModuleChange] = []
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name), after.get(name)
        if old == new:
            continue
        kind = "add" if old is None else "remove" if new is None else "update"
        changes.append(ModuleChange(name, kind, old, new))
    return changes
