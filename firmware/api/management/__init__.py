"""The management API's container routes: modules, logs, system information, deployments.

`register_routes(router, ctx)` adds them all once per router (a restarted runtime service finds
them there); handlers look the reconciler up at request time, so they always reach the current
one, and answer 503 while the runtime service has none.
"""

from __future__ import annotations

import time
from typing import Any

from firmware.api.management import deployments, logs, modules, system
from firmware.api.management.journal import LogRing


def register_routes(router: Any, ctx: Any) -> None:
    if any(route.pattern == "/system/logs" for route in router.routes()):
        return
    from firmware.runtime.service import runtime_service

    def current() -> Any:
        return runtime_service(ctx).current()

    ring = LogRing()
    control = getattr(ctx, "logs", None)
    if control is not None:
        control.add_sink(ring)
    started = getattr(ctx, "started_at", None) or time.time()
    table = [
        *modules.routes(current),
        *logs.routes(current),
        *system.routes(ctx, current, ring, started),
        *deployments.routes(ctx, current),
    ]
    for method, pattern, handler in table:
        router.add(method, pattern, handler)
