"""The shape of a module's createOptions (Docker's container-create body): plain JSON, and the
fields the daemon reads, edits or polices have the types the Docker Engine API gives them.

The reconciler merges `Env` and `Labels`, the workload hook edits `HostConfig.Binds` and `Env`,
the elevation policy reads `HostConfig` (privileges, capabilities, namespaces, devices, binds and
mounts, security options) and the spec hash serialises the whole document. A document that passes
`shape_problem` can go through all of them without a `TypeError`; the fields not listed here go
to the engine as they are, and it judges them. `null` stands for "not given", as the engine reads
it, except for `HostConfig`, which the hooks edit in place and so must be an object. No I/O.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

# Docker's bodies nest about six levels deep; far deeper ones are refused before anything
# recursive (the spec hash's JSON encoder) meets them.
MAX_DEPTH = 32


@dataclass(frozen=True)
class ShapeProblem:
    """The first field of a createOptions document that has the wrong type."""

    field: str  # dotted path inside createOptions, e.g. "HostConfig.Binds[2]"; "" is the whole
    expected: str  # what it must be, e.g. "a list of strings"


@dataclass(frozen=True)
class _Leaf:
    expected: str
    accepts: Callable[[object], bool]
    nullable: bool = True


@dataclass(frozen=True)
class _Table:
    """An object whose listed fields are checked; other fields are left to the engine."""

    fields: Mapping[str, _Node]
    nullable: bool = True
    expected: str = "an object"


@dataclass(frozen=True)
class _Items:
    """A list whose every item is checked."""

    item: _Node
    expected: str
    nullable: bool = True


@dataclass(frozen=True)
class _Values:
    """An object whose every value is checked."""

    value: _Node
    expected: str
    nullable: bool = True


_Node = _Leaf | _Table | _Items | _Values


def _is_str(value: object) -> bool:
    return isinstance(value, str)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_STRING = _Leaf("a string", _is_str)
_BOOL = _Leaf("true or false", lambda value: isinstance(value, bool))
_INTEGER = _Leaf("an integer", _is_int)
_OBJECT = _Table({})
_STRINGS = _Items(_Leaf("a string", _is_str, nullable=False), "a list of strings")
_OBJECTS = _Items(_Table({}, nullable=False), "a list of objects")
_COMMAND = _Leaf(
    "a string or a list of strings",
    lambda value: (
        isinstance(value, str)
        or (isinstance(value, list) and all(isinstance(item, str) for item in value))
    ),
)
_LABELS = _Values(_Leaf("a string", _is_str, nullable=False), "an object of strings")

_MOUNT = _Table(
    {
        "Type": _STRING,
        "Source": _STRING,
        "Target": _STRING,
        "ReadOnly": _BOOL,
        "BindOptions": _OBJECT,
        "VolumeOptions": _Table(
            {
                "Labels": _LABELS,
                "DriverConfig": _Table({"Name": _STRING, "Options": _LABELS}),
            }
        ),
        "TmpfsOptions": _OBJECT,
    },
    nullable=False,
)

_HOST_CONFIG = _Table(
    {
        "Binds": _STRINGS,
        "Mounts": _Items(_MOUNT, "a list of objects"),
        "VolumesFrom": _STRINGS,
        "Privileged": _BOOL,
        "CapAdd": _STRINGS,
        "CapDrop": _STRINGS,
        "Capabilities": _STRINGS,
        "NetworkMode": _STRING,
        "PidMode": _STRING,
        "IpcMode": _STRING,
        "UsernsMode": _STRING,
        "UTSMode": _STRING,
        "CgroupnsMode": _STRING,
        "Devices": _OBJECTS,
        "DeviceCgroupRules": _STRINGS,
        "DeviceRequests": _OBJECTS,
        "SecurityOpt": _STRINGS,
        "MaskedPaths": _STRINGS,
        "ReadonlyPaths": _STRINGS,
        "PortBindings": _OBJECT,
        "RestartPolicy": _OBJECT,
        "LogConfig": _OBJECT,
    },
    nullable=False,
)

_CREATE_OPTIONS = _Table(
    {
        "Image": _STRING,
        "Env": _STRINGS,
        "Labels": _LABELS,
        "Cmd": _COMMAND,
        "Entrypoint": _COMMAND,
        "User": _STRING,
        "WorkingDir": _STRING,
        "Hostname": _STRING,
        "Domainname": _STRING,
        "StopSignal": _STRING,
        "StopTimeout": _INTEGER,
        "ExposedPorts": _OBJECT,
        "Volumes": _OBJECT,
        "Healthcheck": _OBJECT,
        "HostConfig": _HOST_CONFIG,
        "NetworkingConfig": _Table(
            {"EndpointsConfig": _Values(_Table({}, nullable=False), "an object of objects")}
        ),
    },
    nullable=False,
    expected="a JSON object",
)


def shape_problem(options: object) -> ShapeProblem | None:
    """The first problem in `options` (plain JSON first, then the typed fields), or None."""
    problem = _json_problem(options)
    if problem is not None:
        return problem
    return _check(_CREATE_OPTIONS, options, "")


def field_path(parent: str, key: str | int) -> str:
    """`parent` extended by an object key (`A.B`) or a list index (`A[0]`)."""
    if isinstance(key, int):
        return f"{parent}[{key}]"
    return f"{parent}.{key}" if parent else key


def _json_problem(options: object) -> ShapeProblem | None:
    """Plain JSON only (what came from TOML may hold dates): string keys, finite numbers, bounded
    depth. Walked with a stack, so no input can exhaust Python's recursion."""
    stack: list[tuple[object, str, int]] = [(options, "", 0)]
    while stack:
        value, path, depth = stack.pop()
        if depth > MAX_DEPTH:
            return ShapeProblem(path, f"nested at most {MAX_DEPTH} levels deep")
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    return ShapeProblem(path, "an object with string keys")
                stack.append((item, field_path(path, key), depth + 1))
        elif isinstance(value, list):
            stack.extend((item, field_path(path, i), depth + 1) for i, item in enumerate(value))
        elif isinstance(value, float) and not math.isfinite(value):
            return ShapeProblem(path, "a finite number")
        elif value is not None and not isinstance(value, (str, int, float, bool)):
            return ShapeProblem(path, "a JSON value (string, number, boolean, list or object)")
    return None


def _check(node: _Node, value: object, path: str) -> ShapeProblem | None:
    if value is None:
        return None if node.nullable else ShapeProblem(path, node.expected)
    if isinstance(node, _Leaf):
        return None if node.accepts(value) else ShapeProblem(path, node.expected)
    if isinstance(node, _Items):
        if not isinstance(value, list):
            return ShapeProblem(path, node.expected)
        for index, item in enumerate(value):
            problem = _check(node.item, item, field_path(path, index))
            if problem is not None:
                return problem
        return None
    if not isinstance(value, dict):
        return ShapeProblem(path, node.expected)
    if isinstance(node, _Values):
        for key, item in value.items():
            problem = _check(node.value, item, field_path(path, key))
            if problem is not None:
                return problem
        return None
    for key, child in node.fields.items():
        if key in value:
            problem = _check(child, value[key], field_path(path, key))
            if problem is not None:
                return problem
    return None
