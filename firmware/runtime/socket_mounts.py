"""Where IoT Edge modules find the daemon's sockets inside their container, and the binds there
that a module's createOptions may not make.

The runtime mounts each module's own socket directory at `/var/run/iotedge` (see
`firmware.api.workload.environment`). edgeAgent adds its own bind of the workload socket to every
module it deploys (and of the management socket to itself), aimed at the same place; those binds
name host paths of IoT Edge's layout, so they are dropped when a spec is read, before admission
judges its binds, and the runtime's mount takes their place. No I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

SOCKET_DIR_IN_CONTAINER = "/var/run/iotedge"
WORKLOAD_SOCKET_IN_CONTAINER = f"{SOCKET_DIR_IN_CONTAINER}/workload.sock"
MANAGEMENT_SOCKET_IN_CONTAINER = f"{SOCKET_DIR_IN_CONTAINER}/mgmt.sock"
_TARGETS = frozenset(
    {SOCKET_DIR_IN_CONTAINER, WORKLOAD_SOCKET_IN_CONTAINER, MANAGEMENT_SOCKET_IN_CONTAINER}
)


def is_socket_bind(bind: str) -> bool:
    """True for a `source:target[:mode]` bind whose target is where the runtime places sockets."""
    parts = bind.split(":")
    return len(parts) > 1 and parts[1].rstrip("/") in _TARGETS


def without_socket_binds(options: Mapping[str, Any]) -> dict[str, Any]:
    """`options` without the binds `is_socket_bind` names (the same object when it has none);
    `options` must have passed `firmware.runtime.createoptions.shape_problem`."""
    host = options.get("HostConfig")
    if not isinstance(host, Mapping):
        return dict(options)
    binds = host.get("Binds")
    if not binds or not any(is_socket_bind(bind) for bind in binds):
        return dict(options)
    kept = [bind for bind in binds if not is_socket_bind(bind)]
    return {**options, "HostConfig": {**host, "Binds": kept}}
