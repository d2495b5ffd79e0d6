"""What a module's container gets to reach the workload API: IoT Edge's `IOTEDGE_*` variables and
the bind mount of its own socket directory. No I/O: `decorate` edits a Docker container-create body.

The module's host directory `<run_dir>/mnt/<module>/` is mounted at `/var/run/iotedge`, so its
`workload.sock` (and, for the agent, `mgmt.sock`) appear at IoT Edge's usual paths. Mounting the
directory rather than the socket file means a socket recreated by a restarted daemon is seen by
the running container at once: modules never need a restart to reach a new daemon. The mount is
read-only: a module connects to its sockets (which a read-only mount allows) but can create,
rename or remove nothing in the directory the daemon places them in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from firmware.api import versions
from firmware.identity.model import is_system_identity
from firmware.runtime.socket_mounts import (
    MANAGEMENT_SOCKET_IN_CONTAINER,
    SOCKET_DIR_IN_CONTAINER,
    WORKLOAD_SOCKET_IN_CONTAINER,
    is_socket_bind,
)


@dataclass(frozen=True)
class DeviceFacts:
    """What every module is told about the device."""

    device_id: str
    iothub_hostname: str
    gateway_hostname: str  # the gateway's own host name (`hostname`)
    parent_hostname: str | None = None  # the parent gateway in a nested setup
    network: str = "azure-iot-edge"  # the engine network modules join ([runtime] network)
    api_version: str = versions.MODULE_DEFAULT


@dataclass(frozen=True)
class ModuleMounts:
    """The host directory holding a module's sockets (workload, and mgmt for the agent)."""

    socket_dir: str


def module_environment(
    module_id: str, generation_id: str, device: DeviceFacts, *, agent: bool, sockets_dir: str = ""
) -> dict[str, str]:
    """The variables IoT Edge 1.5 gives a module acting as identity `module_id`.

    edgeAgent and edgeHub (system identities) connect upstream themselves: they get the gateway's
    host name as `EdgeDeviceHostName` and a gateway only when there is a parent. Other modules
    connect through edgeHub, at the gateway's host name. The agent also gets the management
    socket, IoT Edge's `Mode`, the network its modules join (`NetworkId`) and the host directory
    of the module sockets (`sockets_dir`, which edgeAgent names in the binds it adds and the
    runtime replaces).
    """
    env = {
        "IOTEDGE_WORKLOADURI": f"unix://{WORKLOAD_SOCKET_IN_CONTAINER}",
        "IOTEDGE_MODULEID": module_id,
        "IOTEDGE_DEVICEID": device.device_id,
        "IOTEDGE_IOTHUBHOSTNAME": device.iothub_hostname,
        "IOTEDGE_APIVERSION": device.api_version,
        "IOTEDGE_AUTHSCHEME": "sasToken",
        "IOTEDGE_MODULEGENERATIONID": generation_id,
    }
    if is_system_identity(module_id):
        env["EdgeDeviceHostName"] = device.gateway_hostname
        if device.parent_hostname:
            env["IOTEDGE_GATEWAYHOSTNAME"] = device.parent_hostname
    else:
        env["IOTEDGE_GATEWAYHOSTNAME"] = device.gateway_hostname
        if device.parent_hostname:
            env["IOTEDGE_PARENTHOSTNAME"] = device.parent_hostname
    if agent:
        env["IOTEDGE_MANAGEMENTURI"] = f"unix://{MANAGEMENT_SOCKET_IN_CONTAINER}"
        env["IOTEDGE_WORKLOADLISTEN_MNTURI"] = f"unix://{sockets_dir}"
        env["NetworkId"] = device.network
        env["Mode"] = "iotedged"
    return env


def decorate(body: dict[str, Any], env: dict[str, str], mounts: ModuleMounts) -> None:
    """Add `env` (replacing same-named entries) and the read-only bind of the socket directory to
    a create body (replacing any bind a module's own options make at the same place)."""
    kept = [entry for entry in body.get("Env") or [] if entry.partition("=")[0] not in env]
    body["Env"] = [*kept, *(f"{name}={value}" for name, value in sorted(env.items()))]
    host_config = body.setdefault("HostConfig", {})
    binds = [bind for bind in host_config.get("Binds") or [] if not is_socket_bind(bind)]
    binds.append(f"{mounts.socket_dir}:{SOCKET_DIR_IN_CONTAINER}:ro")
    host_config["Binds"] = binds
