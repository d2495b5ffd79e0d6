"""`POST /deployments?dry-run=true|false`: replace every module at once from a deployment manifest.

The body is an IoT Edge deployment manifest, its `properties.desired` part, or a plain
`{"modules": {...}}` (see `firmware.runtime.manifest`). The answer lists what changes, module by
module: `{"dryRun", "changes": [{"name", "change": "add"|"update"|"remove", "image", "details",
"recreate"}], "skipped"}`. With `dry-run=false` (the default) the new set is persisted in one write
and then carried out by the reconciler; a manifest with any error, or any module the runtime's
admission refuses (`firmware.runtime.admission`), changes nothing, dry run or not.
"""

from __future__ import annotations

from collections.abc import Callable

from firmware.api.model import ApiRequest, ApiResponse
from firmware.api.router import RouteTable
from firmware.config.schema import Config
from firmware.errors import BadRequest
from firmware.runtime.manifest import change_document, parse_deployment
from firmware.runtime.reconciler import Reconciler


def routes(config: Callable[[], Config], current: Callable[[], Reconciler]) -> RouteTable:
    """The deployment route; `config()` and `current()` give the config (the agent's name) and
    the reconciler at request time."""

    async def deploy(request: ApiRequest) -> ApiResponse:
        flag = request.query.get("dry-run", "false").lower()
        if flag not in ("true", "false"):
            raise BadRequest(f"query parameter 'dry-run' is {flag!r}; use true or false")
        reconciler = current()
        deployment = parse_deployment(request.json_object(), agent_name=config().agent.name)
        changes = await reconciler.apply(deployment.modules, dry_run=flag == "true")
        return ApiResponse(
            200,
            {
                "dryRun": flag == "true",
                "changes": [change_document(change) for change in changes],
                "skipped": list(deployment.skipped),
            },
        )

    return [("POST", "/deployments", deploy)]
