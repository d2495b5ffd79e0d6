"""The desired set of modules, kept in the state store so a reboot with no network restores it.

One document, `modules`, holds every module's spec in the management API's shape. Changes are
whole-document replacements written atomically, so a deployment is applied all at once or not at
all. The agent's spec comes from `[agent]` in the config; when the agent updates itself through
the management API (as edgeAgent does when a deployment changes it), that spec is kept in a second
document, `agent`, with the hash of the config's spec it replaced: once `[agent]` changes, the
config wins again.

A stored entry that no longer parses (written by an older version, or edited by hand) does not
stop the others: it is loaded as an `UnusableModule`, shown failed, never run, and written back
as it is until it is replaced or deleted, so nothing is lost.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from firmware.errors import BadRequest, StateError
from firmware.logs import fields, get_logger
from firmware.runtime.spec import ModuleSpec
from firmware.store.state import StateStore

DOCUMENT = "modules"
AGENT_DOCUMENT = "agent"

log = get_logger("runtime")


@dataclass(frozen=True)
class ModuleChange:
    """One line of a deployment diff."""

    name: str
    change: str  # "add", "update", "remove"
    before: ModuleSpec | None
    after: ModuleSpec | None


@dataclass(frozen=True)
class UnusableModule:
    """A stored module document that does not parse, kept as it was found."""

    name: str
    document: object
    problem: str  # what is wrong, naming the field


@dataclass(frozen=True)
class StoredModules:
    """What the state store holds: the specs that parse and the entries that do not."""

    specs: Mapping[str, ModuleSpec] = field(default_factory=dict)
    unusable: Mapping[str, UnusableModule] = field(default_factory=dict)


class DesiredModules:
    """Load and replace the stored module specs (blocking: call through the executor)."""

    def __init__(self, store: StateStore) -> None:
        self._store = store

    def load(self) -> StoredModules:
        """Every stored module; a `StateError` only when the document itself cannot be read."""
        doc = self._store.get(DOCUMENT) or {"modules": {}}
        entries = doc.get("modules", {})
        if not isinstance(entries, dict):
            raise StateError(
                f"state file {self._store.path(DOCUMENT)} has no object of modules by name",
                hint="it was left as is; restore it from a backup or move it aside",
            )
        specs: dict[str, ModuleSpec] = {}
        unusable: dict[str, UnusableModule] = {}
        for name, item in entries.items():
            try:
                spec = ModuleSpec.from_api(item)
                if spec.name != name:
                    raise BadRequest(f"field 'name' is {spec.name!r} but it is stored as {name!r}")
                specs[name] = spec
            except BadRequest as exc:
                unusable[name] = UnusableModule(
                    name, item, f"stored spec is unusable: {exc.render()}"
                )
            except Exception as exc:
                log.error("stored spec cannot be read", exc_info=exc, extra=fields(module=name))
                problem = f"stored spec is unusable: internal error: {type(exc).__name__}: {exc}"
                unusable[name] = UnusableModule(name, item, problem)
        return StoredModules(specs, unusable)

    def save(
        self, specs: Mapping[str, ModuleSpec], kept: Mapping[str, object] | None = None
    ) -> None:
        """Replace the stored modules by `specs`, plus the documents `kept` as they are (entries
        that are refused or unusable, which only a person may replace or delete)."""
        stored = {name: spec.to_api(credentials=True) for name, spec in specs.items()}
        modules = {**(kept or {}), **stored}
        self._store.put(DOCUMENT, {"modules": dict(sorted(modules.items()))})

    def load_agent(self, base: str) -> ModuleSpec | None:
        """The agent's spec set through the management API over the config's spec of hash
        `base`; None when there is none, or it was set over another config spec (then it is
        removed) or cannot be read (then it is left as it is, and logged)."""
        doc = self._store.get(AGENT_DOCUMENT)
        if doc is None:
            return None
        if doc.get("base") != base:
            self._store.delete(AGENT_DOCUMENT)
            log.info("[agent] in the config changed: the agent's own update is dropped")
            return None
        try:
            return ModuleSpec.from_api(doc.get("spec"))
        except BadRequest as exc:
            log.error(
                "the agent's stored update is unusable; the config's [agent] is used",
                extra=fields(error=exc.render(), file=str(self._store.path(AGENT_DOCUMENT))),
            )
            return None

    def save_agent(self, spec: ModuleSpec, base: str) -> None:
        """Keep `spec` as the agent's, set over the config's spec of hash `base`."""
        self._store.put(AGENT_DOCUMENT, {"base": base, "spec": spec.to_api(credentials=True)})


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
