"""Elevated create options: what in a module's createOptions gives its container more of the host
than Docker's defaults, for admission to refuse while `allow_elevated_docker_permissions` is false.

Elevation is any of, in `HostConfig`: `Privileged`; a capability beyond Docker's default set in
`CapAdd` or `Capabilities` (`ALL` included); the host's pid, ipc, user, uts or cgroup namespace
(and another container's pid namespace); `Devices`, `DeviceCgroupRules`, `DeviceRequests`;
`SecurityOpt` that turns confinement off (seccomp, AppArmor, SELinux labels, system paths) or
brings its own seccomp profile; `MaskedPaths`/`ReadonlyPaths` that leave out Docker's defaults;
`VolumesFrom`; a volume mount with driver options; and a bind (`Binds`, `Mounts` of type bind)
of a protected host path, of anything under one, or of a directory that holds one.
The host network is not elevation: IoT Edge allows it and common modules (edgeHub, protocol
gateways) need it; a module on it can reach what the host can over the network, no more.

Host paths are compared in three forms: as written with `..`, `.`, repeated and trailing slashes
removed (what the engine cleans it to), and as `resolve` (the host's realpath) sees the written
and the cleaned path, so a symlink to /etc is /etc. Pure apart from `resolve`.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# Docker's default capability set (moby oci/caps/defaults.go); any other is elevation.
DEFAULT_CAPABILITIES = frozenset(
    {
        "CHOWN",
        "DAC_OVERRIDE",
        "FSETID",
        "FOWNER",
        "MKNOD",
        "NET_RAW",
        "SETGID",
        "SETUID",
        "SETFCAP",
        "SETPCAP",
        "NET_BIND_SERVICE",
        "SYS_CHROOT",
        "KILL",
        "AUDIT_WRITE",
    }
)
# Host directories no module may bind, besides the engine socket and the daemon's own directories.
SYSTEM_PATHS = ("/etc", "/proc", "/sys", "/dev", "/boot", "/var/lib/docker")
# What Docker masks and makes read-only in /proc and /sys unless told otherwise.
DOCKER_MASKED_PATHS = (
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
)
DOCKER_READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")
_NAMESPACES = {
    "PidMode": "process",
    "IpcMode": "IPC",
    "UsernsMode": "user",
    "UTSMode": "UTS",
    "CgroupnsMode": "cgroup",
}


@dataclass(frozen=True)
class Elevation:
    """One elevated field: where it is in createOptions and what it asks for."""

    field: str  # e.g. "HostConfig.CapAdd[0]"
    what: str  # e.g. "adds capability SYS_ADMIN, beyond Docker's default set"


def host_path(path: str) -> str:
    """`path` cleaned as the engine cleans a bind source: absolute, no `..`, `.`, `//` or
    trailing `/`."""
    return posixpath.normpath("/" + path.lstrip("/"))


def _unresolved(path: str) -> str:
    return path


@dataclass(frozen=True)
class ProtectedPaths:
    """Host paths a module may not bind: each one, anything under it, and any directory above it
    (which would hold it). Build with `protect`."""

    paths: tuple[str, ...] = ()
    resolve: Callable[[str], str] = _unresolved

    def reached_by(self, source: str) -> tuple[str, str] | None:
        """For bind source `source`: the path the host sees and the protected path it is, lies
        under or holds; None if it reaches none."""
        cleaned = host_path(source)
        forms = {cleaned, host_path(self.resolve(cleaned)), host_path(self.resolve("/" + source))}
        for form in sorted(forms):
            for protected in self.paths:
                if _within(form, protected) or _within(protected, form):
                    return form, protected
        return None


def protect(paths: Iterable[str], resolve: Callable[[str], str] = _unresolved) -> ProtectedPaths:
    """`ProtectedPaths` for `paths`, each also as `resolve` sees it and under its /run or
    /var/run alias (the two name one directory on current distributions)."""
    forms: set[str] = set()
    for path in paths:
        for form in (host_path(path), host_path(resolve(host_path(path)))):
            forms.update((form, _run_alias(form)))
    return ProtectedPaths(tuple(sorted(forms)), resolve)


def find_elevation(options: Mapping[str, Any], protected: ProtectedPaths) -> Elevation | None:
    """The first elevated field of createOptions `options` (whose shape
    `firmware.runtime.createoptions.shape_problem` accepted), or None."""
    host: Mapping[str, Any] = options.get("HostConfig") or {}
    return (
        _privileged(host)
        or _capabilities(host)
        or _namespaces(host)
        or _devices(host)
        or _security_options(host)
        or _system_paths(host)
        or _volumes_from(host)
        or _binds(host, protected)
        or _mounts(host, protected)
    )


def _privileged(host: Mapping[str, Any]) -> Elevation | None:
    if host.get("Privileged") is True:
        return Elevation(
            "HostConfig.Privileged",
            "asks for a privileged container (every capability and device, no confinement)",
        )
    return None


def _capabilities(host: Mapping[str, Any]) -> Elevation | None:
    for key in ("CapAdd", "Capabilities"):
        for index, name in enumerate(host.get(key) or []):
            capability = name.strip().upper().removeprefix("CAP_")
            if capability == "ALL":
                return Elevation(f"HostConfig.{key}[{index}]", "adds every capability (ALL)")
            if capability not in DEFAULT_CAPABILITIES:
                return Elevation(
                    f"HostConfig.{key}[{index}]",
                    f"adds capability {capability}, beyond Docker's default set",
                )
    return None


def _namespaces(host: Mapping[str, Any]) -> Elevation | None:
    for key, namespace in _NAMESPACES.items():
        mode = (host.get(key) or "").strip().lower()
        if mode == "host":
            return Elevation(f"HostConfig.{key}", f"shares the host's {namespace} namespace")
        if key == "PidMode" and mode.startswith("container:"):
            return Elevation(
                "HostConfig.PidMode",
                "joins another container's process namespace (and can trace its processes)",
            )
    return None


def _devices(host: Mapping[str, Any]) -> Elevation | None:
    for key, what in (
        ("Devices", "passes host devices into the container"),
        ("DeviceCgroupRules", "lets the container use host devices by cgroup rule"),
        ("DeviceRequests", "asks for host devices (GPUs and the like)"),
    ):
        if host.get(key):
            return Elevation(f"HostConfig.{key}", what)
    return None


def _security_options(host: Mapping[str, Any]) -> Elevation | None:
    for index, option in enumerate(host.get("SecurityOpt") or []):
        key, sep, value = option.partition("=")
        if not sep:
            key, _, value = option.partition(":")
        key, value = key.strip().lower(), value.strip()
        what = None
        if key == "seccomp" and value.lower() == "unconfined":
            what = "turns the seccomp filter off"
        elif key == "seccomp" and value.startswith("{"):
            what = "brings its own seccomp profile, which may allow any system call"
        elif key == "apparmor" and value.lower() == "unconfined":
            what = "turns AppArmor confinement off"
        elif key == "label" and (
            value.lower() == "disable" or value.lower() in ("type:spc_t", "type:unconfined_t")
        ):
            what = "turns SELinux separation off"
        elif key == "systempaths" and value.lower() == "unconfined":
            what = "unmasks /proc and /sys paths Docker hides"
        if what is not None:
            return Elevation(f"HostConfig.SecurityOpt[{index}]", what)
    return None


def _system_paths(host: Mapping[str, Any]) -> Elevation | None:
    for key, defaults in (
        ("MaskedPaths", DOCKER_MASKED_PATHS),
        ("ReadonlyPaths", DOCKER_READONLY_PATHS),
    ):
        given: Sequence[str] | None = host.get(key)
        if given is None:
            continue
        missing = sorted(set(defaults) - {host_path(path) for path in given})
        if missing:
            return Elevation(
                f"HostConfig.{key}", f"leaves out {missing[0]}, which Docker protects by default"
            )
    return None


def _volumes_from(host: Mapping[str, Any]) -> Elevation | None:
    if host.get("VolumesFrom"):
        return Elevation(
            "HostConfig.VolumesFrom",
            "mounts another container's volumes, which may hold any host path",
        )
    return None


def _binds(host: Mapping[str, Any], protected: ProtectedPaths) -> Elevation | None:
    for index, bind in enumerate(host.get("Binds") or []):
        source, sep, _ = bind.partition(":")
        if not sep or not source.startswith("/"):
            continue  # an anonymous or a named volume, not a host path
        reached = protected.reached_by(source)
        if reached is not None:
            return Elevation(f"HostConfig.Binds[{index}]", _reach(source, *reached))
    return None


def _mounts(host: Mapping[str, Any], protected: ProtectedPaths) -> Elevation | None:
    for index, mount in enumerate(host.get("Mounts") or []):
        kind = (mount.get("Type") or "").strip().lower()
        if kind == "bind":
            source = mount.get("Source") or ""
            reached = protected.reached_by(source)
            if reached is not None:
                return Elevation(f"HostConfig.Mounts[{index}].Source", _reach(source, *reached))
        elif kind == "volume":
            driver = (mount.get("VolumeOptions") or {}).get("DriverConfig") or {}
            if driver.get("Options"):
                return Elevation(
                    f"HostConfig.Mounts[{index}].VolumeOptions.DriverConfig.Options",
                    "gives a volume driver options, which can mount any host path",
                )
    return None


def _reach(source: str, seen: str, protected: str) -> str:
    if seen == "/":
        return f"binds the host's root directory ({source!r})"
    shown = source if seen == source else f"{source} (on the host {seen})"
    return f"binds host path {shown}, which reaches protected path {protected}"


def _within(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def _run_alias(path: str) -> str:
    if _within(path, "/var/run"):
        return "/run" + path[len("/var/run") :]
    if _within(path, "/run"):
        return "/var" + path
    return path
