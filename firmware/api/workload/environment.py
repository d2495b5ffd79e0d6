"""What a module's container gets to reach the workload API: IoT Edge's `IOTEDGE_*` variables and
the bind mount of its own socket (and, for the agent, the management socket). No I/O: `decorate`
edits a Docker container-create body.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from firmware.api import versions

# Where IoT Edge modules find their sockets inside the container.
WORKLOAD_SOCKET_IN_CONTAINER = "/var/run/iotedge/workload.sock"
MANAGEMENT_SOCKET_IN_CONTAINER = "/var/run/iotedge/mgmt.sock"


@dataclass(frozen=True)
class DeviceFacts:
    """What every module is told about the device."""

    device_id: str
    iothub_hostname: str
    gateway_hostname: str
    api_version: str = versions.MODULE_DEFAULT


@dataclass(frozen=True)
class ModuleMounts:
    """Host paths of the sockets a module's container gets."""

    workload_socket: str
    management_socket: str | None = None  # the agent only


def module_environment(
    module_id: str, generation_id: str, device: DeviceFacts, *, agent: bool
) -> dict[str, str]:
    env = {
        "IOTEDGE_WORKLOADURI": f"unix://{WORKLOAD_SOCKET_IN_CONTAINER}",
        "IOTEDGE_MODULEID": module_id,
        "IOTEDGE_DEVICEID": device.device_id,
        "IOTEDGE_IOTHUBHOSTNAME": device.iothub_hostname,
        "IOTEDGE_GATEWAYHOSTNAME": device.gateway_hostname,
        "IOTEDGE_APIVERSION": device.api_version,
        "IOTEDGE_AUTHSCHEME": "sasToken",
        "IOTEDGE_MODULEGENERATIONID": generation_id,
    }
    if agent:
        env["IOTEDGE_MANAGEMENTURI"] = f"unix://{MANAGEMENT_SOCKET_IN_CONTAINER}"
    return env


def decorate(body: dict[str, Any], env: dict[str, str], mounts: ModuleMounts) -> None:
    """Add `env` (replacing same-named entries) and the socket binds to a container-create body."""
    kept = [entry for entry in body.get("Env") or [] if entry.partition("=")[0] not in env]
    body["Env"] = [*kept, *(f"{name}={value}" for name, value in sorted(env.items()))]
    host_config = body.setdefault("HostConfig", {})
    binds = [bind for bind in host_config.get("Binds") or [] if not _ours(bind)]
    binds.append(f"{mounts.workload_socket}:{WORKLOAD_SOCKET_IN_CONTAINER}")
    if mounts.management_socket is not None:
        binds.append(f"{mounts.management_socket}:{MANAGEMENT_SOCKET_IN_CONTAINER}")
    host_config["Binds"] = binds


def _ours(bind: str) -> bool:
    """True for a bind whose container path is one of the sockets this module places."""
    parts = bind.split(":")
    return len(parts) > 1 and parts[1] in (
        WORKLOAD_SOCKET_IN_CONTAINER,
        MANAGEMENT_SOCKET_IN_CONTAINER,
    )
