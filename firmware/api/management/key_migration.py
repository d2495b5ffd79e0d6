"""`POST /keys/migrate` on the management API: the plan to move keys to another backend, or the
move itself.

The body is `{"keys": [names]}` or `{"all": true}`, with `"to": backend` and `"apply": bool`
(default false: only the plan). The answer lists each key with where it is, where it goes, its
kind, whether its backend gives it out, the steps and, once applied, what became of it
(`firmware.keys.migration`). One migration runs at a time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from firmware.api.model import ApiRequest, ApiResponse
from firmware.api.router import RouteTable
from firmware.errors import BadRequest
from firmware.keys.migration import KeyMigration, MoveOutcome, MoveResult

if TYPE_CHECKING:
    from firmware.keys.service import Executor, KeyService

_SHAPE = 'send {"keys": ["NAME", ...]} or {"all": true}, with "to": "BACKEND" and "apply": bool'


def routes(keys: Callable[[], KeyService], executor: Executor) -> RouteTable:
    """The migration route; `keys()` gives the running key service (or raises `Unavailable`)."""
    one_at_a_time = asyncio.Lock()

    async def migrate(request: ApiRequest) -> ApiResponse:
        names, target, apply = _read(request.json_object())
        async with one_at_a_time:
            migration = KeyMigration(keys(), executor)
            plan = await migration.plan(names, target)
            if apply:
                results = await migration.apply(plan)
            else:
                results = tuple(
                    MoveResult(move, MoveOutcome.PLANNED, move.source) for move in plan.moves
                )
        return ApiResponse(
            200, {"to": target, "apply": apply, "keys": [_document(r) for r in results]}
        )

    return [("POST", "/keys/migrate", migrate)]


def _read(body: dict[str, object]) -> tuple[list[str] | None, str, bool]:
    """The names (None: every key), the target backend and whether to apply, or `BadRequest`."""
    names, every, target = body.get("keys"), body.get("all", False), body.get("to")
    apply = body.get("apply", False)
    if not isinstance(target, str) or not target:
        raise BadRequest('field "to" is missing or not a backend name', hint=_SHAPE)
    if not isinstance(apply, bool) or not isinstance(every, bool):
        raise BadRequest('fields "apply" and "all" are true or false', hint=_SHAPE)
    if every:
        if names is not None:
            raise BadRequest('give either "keys" or "all", not both', hint=_SHAPE)
        return None, target, apply
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise BadRequest('field "keys" is missing or not a list of key names', hint=_SHAPE)
    return names, target, apply


def _document(result: MoveResult) -> dict[str, object]:
    move = result.move
    return {
        "name": move.key_id,
        "kind": move.kind.value,
        "from": move.source,
        "to": move.target,
        "exportable": move.exportable,
        "action": move.action.value,
        "steps": list(move.steps),
        "leftovers": list(move.leftovers),
        "status": result.outcome.value,
        "now": result.backend,
        "removed": list(result.removed),
        "kept": list(result.kept),
        "problem": result.problem,
    }
