"""Deployment manifests: the set of modules a gateway should run, in the shapes people write.

Accepted shapes (JSON, or the same tree in TOML):
- IoT Edge's deployment manifest: `modulesContent.$edgeAgent."properties.desired"` (or nested
  `properties.desired`) with `modules` and `systemModules` (the agent entry there is skipped: the
  agent comes from `[agent]` in config.toml);
- the `properties.desired` document itself (`{"modules": ..., "systemModules": ...}`);
- a plain `{"modules": {NAME: {settings, env, status, restartPolicy, version}}}`.
Every error names the field it is in, as a dotted path from the document's root. A module whose
image comes from a registry listed in `runtime.settings.registryCredentials` is pulled with those
credentials (`firmware.runtime.registry_credentials`), as edgeAgent pulls it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from firmware.errors import BadRequest
from firmware.runtime.desired import ModuleChange
from firmware.runtime.registry_credentials import credential_for, read_registry_credentials
from firmware.runtime.spec import ModuleSpec

AGENT_NAMES = frozenset({"edgeAgent", "$edgeAgent"})


@dataclass(frozen=True)
class Deployment:
    """The modules of one manifest (agent excluded) and the entries that were skipped."""

    modules: Mapping[str, ModuleSpec]
    skipped: tuple[str, ...] = ()


def parse_deployment(doc: object, *, agent_name: str = "edgeAgent") -> Deployment:
    if not isinstance(doc, dict):
        raise BadRequest("the deployment must be a JSON object (or a TOML table)")
    desired, where = _desired(doc)
    credentials = read_registry_credentials(desired, where)
    modules: dict[str, ModuleSpec] = {}
    skipped: list[str] = []
    for section in ("systemModules", "modules"):
        entries = desired.get(section, {})
        if entries is None:
            continue
        if not isinstance(entries, dict):
            raise BadRequest(f"field '{where}{section}' must be an object of modules by name")
        for name, entry in entries.items():
            if name in AGENT_NAMES or name == agent_name:
                skipped.append(f"{where}{section}.{name}")
                continue
            if name in modules:
                raise BadRequest(
                    f"field '{where}{section}.{name}': module {name!r} is listed twice"
                )
            spec = ModuleSpec.from_manifest(name, entry, where=f"{where}{section}")
            credential = credential_for(spec.image, credentials)
            if credential is not None:
                spec = replace(spec, registry_auth=credential.auth())
            modules[name] = spec
    if "modules" not in desired and "systemModules" not in desired:
        raise BadRequest(
            f"field '{where}modules' is missing",
            hint='a deployment lists its modules under "modules"',
        )
    return Deployment(modules, tuple(skipped))


def _desired(doc: dict[str, Any]) -> tuple[dict[str, Any], str]:
    content = doc.get("modulesContent")
    if content is None:
        return doc, ""
    if not isinstance(content, dict):
        raise BadRequest("field 'modulesContent' must be an object")
    agent = content.get("$edgeAgent")
    if not isinstance(agent, dict):
        raise BadRequest("field 'modulesContent.$edgeAgent' is missing or not an object")
    if "properties.desired" in agent:
        desired, where = agent["properties.desired"], "modulesContent.$edgeAgent.properties.desired"
    else:
        props = agent.get("properties")
        desired = props.get("desired") if isinstance(props, dict) else None
        where = "modulesContent.$edgeAgent.properties.desired"
    if not isinstance(desired, dict):
        raise BadRequest(f"field '{where}' is missing or not an object")
    return desired, where + "."


def change_details(change: ModuleChange) -> list[str]:
    """What differs in one change, one short phrase per field (empty for add/remove)."""
    before, after = change.before, change.after
    if before is None or after is None:
        return []
    details: list[str] = []
    for label, old, new in (
        ("image", before.image, after.image),
        ("version", before.version, after.version),
        ("status", before.status.value, after.status.value),
        ("restartPolicy", before.restart_policy.value, after.restart_policy.value),
        ("imagePullPolicy", before.pull_policy.value, after.pull_policy.value),
    ):
        if old != new:
            details.append(f"{label}: {old or '-'} -> {new or '-'}")
    added = sorted(set(after.env) - set(before.env))
    removed = sorted(set(before.env) - set(after.env))
    changed = sorted(k for k in set(before.env) & set(after.env) if before.env[k] != after.env[k])
    if added or removed or changed:
        parts = [f"+{k}" for k in added] + [f"-{k}" for k in removed] + [f"~{k}" for k in changed]
        details.append("env: " + " ".join(parts))
    if _canonical(before.create_options) != _canonical(after.create_options):
        details.append("createOptions changed")
    if before.registry_auth != after.registry_auth:
        details.append("registry credentials changed")
    return details


def change_document(change: ModuleChange) -> dict[str, Any]:
    """One change as the API answers it."""
    spec = change.after or change.before
    return {
        "name": change.name,
        "change": change.change,
        "image": spec.image if spec else None,
        "details": change_details(change),
        "recreate": bool(
            change.before and change.after and change.before.spec_hash() != change.after.spec_hash()
        ),
    }


def _canonical(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))
