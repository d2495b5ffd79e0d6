"""Admission: the one check every module spec passes before the runtime takes it.

Every way in passes here: `POST`/`PUT /modules` and deployments (the reconciler's `put` and
`apply`), the specs in the state store when the reconciler loads them, and the agent from
config.toml (the runtime service, before the daemon starts). The reconciler checks again just
before each create, so a symlink planted since admission is seen too.

A spec is refused when its createOptions do not have the shape the daemon relies on
(`firmware.runtime.createoptions`), or ask for elevation (`firmware.runtime.elevation`) while
`allow_elevated_docker_permissions` is false. A `Refusal` names the field inside createOptions and
what to do; callers turn it into their own error (a 400, a config error, a failed module).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from firmware.runtime.createoptions import shape_problem
from firmware.runtime.elevation import (
    SYSTEM_PATHS,
    ProtectedPaths,
    find_elevation,
    protect,
)

SETTING = "allow_elevated_docker_permissions"
ELEVATION_HINT = (
    f"if this module must have it, set {SETTING} = true at the top of config.toml "
    "and reload (systemctl reload edgekeeper)"
)
SHAPE_HINT = "createOptions is Docker's container-create body (Docker Engine API)"


@dataclass(frozen=True)
class Refusal:
    """Why a spec's createOptions are not admitted."""

    field: str  # the path inside createOptions ("" for the whole document)
    reason: str  # e.g. "must be an object", "asks for a privileged container ...: not allowed ..."
    hint: str

    def field_under(self, prefix: str) -> str:
        """The field's full name under `prefix`, e.g. `settings.createOptions.HostConfig`."""
        return f"{prefix}.{self.field}" if self.field else prefix


@dataclass(frozen=True)
class AdmissionPolicy:
    """Shape checks always; elevation refused unless `allow_elevated`. The default admits any
    well-shaped createOptions, as IoT Edge does by default."""

    allow_elevated: bool = True
    protected: ProtectedPaths = field(default_factory=ProtectedPaths)

    def refusal(self, create_options: Mapping[str, Any]) -> Refusal | None:
        """Why `create_options` are refused, or None. Blocking when `protected` resolves host
        paths (the host's realpath): call it through the executor."""
        problem = shape_problem(create_options)
        if problem is not None:
            return Refusal(problem.field, f"must be {problem.expected}", SHAPE_HINT)
        if self.allow_elevated:
            return None
        found = find_elevation(create_options, self.protected)
        if found is None:
            return None
        reason = f"{found.what}: not allowed while {SETTING} = false"
        return Refusal(found.field, reason, ELEVATION_HINT)


def host_policy(
    *,
    allow_elevated: bool,
    engine_socket: str,
    daemon_dirs: Iterable[str],
    resolve: Callable[[str], str] = os.path.realpath,
) -> AdmissionPolicy:
    """The policy for this host: the system paths, the engine's socket and the daemon's own
    directories protected, host paths resolved with `resolve` (blocking: it reads symlinks)."""
    paths = (*SYSTEM_PATHS, engine_socket, *daemon_dirs)
    return AdmissionPolicy(allow_elevated, protect(paths, resolve))
