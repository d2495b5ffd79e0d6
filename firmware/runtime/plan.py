"""Reconcile planning: from desired specs and the containers the engine has, the actions to take.

Pure: it reads specs, observed containers, restart records and the time, and returns actions; the
reconciler carries them out against the engine. One container per module is kept: a container that
matches its spec is adopted as it is (never recreated), one made from another spec or found dead is
replaced, duplicates and containers of modules no longer wanted are removed.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import dataclass

from firmware.runtime.backoff import RestartRecord
from firmware.runtime.spec import DesiredStatus, ModuleSpec, RestartPolicy

_GONE = frozenset({"dead", "removing"})
_STOPPED = frozenset({"created", "exited"})


@dataclass(frozen=True)
class ObservedContainer:
    """A container carrying our owner label, as the engine lists it."""

    container_id: str
    module: str
    spec_hash: str
    state: str
    exit_code: int = 0
    healthy: bool | None = None
    ever_started: bool = True


@dataclass(frozen=True)
class CreateContainer:
    spec: ModuleSpec
    start: bool


@dataclass(frozen=True)
class StartContainer:
    module: str
    container_id: str


@dataclass(frozen=True)
class RestartContainer:
    module: str
    container_id: str


@dataclass(frozen=True)
class StopContainer:
    module: str
    container_id: str


@dataclass(frozen=True)
class RemoveContainer:
    module: str
    container_id: str


@dataclass(frozen=True)
class WaitUntil:
    """Nothing to do for this module before `when` (restart back-off)."""

    module: str
    when: float


Action = (
    CreateContainer
    | StartContainer
    | RestartContainer
    | StopContainer
    | RemoveContainer
    | WaitUntil
)


def plan(
    desired: Mapping[str, ModuleSpec],
    observed: list[ObservedContainer],
    records: Mapping[str, RestartRecord],
    now: float,
    start_requested: Set[str] = frozenset(),
) -> list[Action]:
    """The actions that bring `observed` to `desired`. A module in `start_requested` was asked to
    start: its stopped container is started whatever its restart policy."""
    by_module: dict[str, list[ObservedContainer]] = {}
    for container in observed:
        by_module.setdefault(container.module, []).append(container)

    actions: list[Action] = []
    for module, containers in sorted(by_module.items()):
        if module not in desired:
            actions.extend(RemoveContainer(module, c.container_id) for c in containers)
    for name, spec in sorted(desired.items()):
        asked = name in start_requested
        actions.extend(_plan_module(spec, by_module.get(name, []), records.get(name), now, asked))
    return actions


def _plan_module(
    spec: ModuleSpec,
    containers: list[ObservedContainer],
    record: RestartRecord | None,
    now: float,
    asked: bool,
) -> list[Action]:
    wanted = spec.spec_hash()
    keep = _pick(containers, wanted)
    actions: list[Action] = [
        RemoveContainer(spec.name, c.container_id) for c in containers if c is not keep
    ]
    run = spec.status is DesiredStatus.RUNNING
    if keep is None:
        actions.append(CreateContainer(spec, start=run))
        return actions
    if not run:
        if keep.state in ("running", "restarting", "paused"):
            actions.append(StopContainer(spec.name, keep.container_id))
        return actions
    if keep.state == "running":
        if keep.healthy is False and spec.restart_policy in (
            RestartPolicy.ON_UNHEALTHY,
            RestartPolicy.ALWAYS,
        ):
            restart = RestartContainer(spec.name, keep.container_id)
            actions.append(_after_backoff(restart, record, now))
        return actions
    if keep.state in _STOPPED and (asked or _should_start(spec.restart_policy, keep)):
        actions.append(_after_backoff(StartContainer(spec.name, keep.container_id), record, now))
    return actions


def _pick(containers: list[ObservedContainer], wanted: str) -> ObservedContainer | None:
    """The one container to keep: made from the wanted spec, not dead, running ones first."""
    usable = [c for c in containers if c.spec_hash == wanted and c.state not in _GONE]
    usable.sort(key=lambda c: (c.state != "running", c.container_id))
    return usable[0] if usable else None


def _should_start(policy: RestartPolicy, container: ObservedContainer) -> bool:
    if not container.ever_started:
        return True
    if policy is RestartPolicy.ALWAYS:
        return True
    if policy is RestartPolicy.ON_FAILURE:
        return container.exit_code != 0
    return False


def _after_backoff(
    action: StartContainer | RestartContainer, record: RestartRecord | None, now: float
) -> Action:
    if record is not None and now < record.not_before:
        return WaitUntil(action.module, record.not_before)
    return action
