"""`GET /keys` on the management API: every backend's keys, where each stands against the
location record, and the backends out of reach.

Each key is `{"name", "kind", "backend", "location", "note", "configured", "movable",
"advice"}`: `location` is "recorded" (the copy in use), "orphan" (the record names another
backend) or "unrecorded"; `configured` is the backend config names for a new key of that name,
and `note` says both in words; `movable` says whether its backend gives the material (so
`keys migrate` can move it) and `advice`, for a recorded key config now names another backend
for, what to do (null otherwise). Each unreachable backend is `{"backend", "message", "keys"}`,
`keys` being the recorded keys it holds (unusable until it is back).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from firmware.api.model import ApiRequest, ApiResponse
from firmware.api.router import RouteTable

if TYPE_CHECKING:
    from firmware.keys.service import KeyService


def routes(keys: Callable[[], KeyService]) -> RouteTable:
    """The key routes; `keys()` gives the running key service (or raises `Unavailable`)."""

    async def list_keys(request: ApiRequest) -> ApiResponse:
        listing = await keys().list()
        return ApiResponse(
            200,
            {
                "keys": [
                    {
                        "name": key.key_id,
                        "kind": key.kind.value,
                        "backend": key.backend,
                        "location": key.placement.value,
                        "note": key.note,
                        "configured": key.configured,
                        "movable": key.movable,
                        "advice": key.advice,
                    }
                    for key in listing.keys
                ],
                "unavailable": [
                    {
                        "backend": problem.backend,
                        "message": problem.message,
                        "keys": list(problem.keys),
                    }
                    for problem in listing.unavailable
                ],
            },
        )

    return [("GET", "/keys", list_keys)]
