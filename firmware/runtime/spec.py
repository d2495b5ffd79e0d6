"""`ModuleSpec`: what a module should be, parsed from the management API or a deployment manifest.

Two input shapes carry the same facts. The management API (IoT Edge's `ModuleSpec`):
`{"name", "type": "docker", "imagePullPolicy", "config": {"settings": {"image", "createOptions"},
"env": [{"key", "value"}]}}`, plus our `restartPolicy`, `status` and `version`; without them a
module is created stopped and never restarted by the runtime, as aziot-edged does for edgeAgent.
A deployment manifest's module entry: `{"version", "type", "status", "restartPolicy",
"settings": {"image", "createOptions" (a JSON string or an object)}, "env": {"NAME": {"value":
...}}}`.
The name follows the one name rule (`firmware.names`); createOptions must have the shape the
daemon relies on (`firmware.runtime.createoptions`), and lose the binds of IoT Edge's socket paths
that edgeAgent adds (`firmware.runtime.socket_mounts`). Every problem names the field it is in.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from firmware.errors import BadRequest
from firmware.json_text import read_json
from firmware.names import MODULE_NAME_RULE, is_module_name
from firmware.runtime.createoptions import shape_problem
from firmware.runtime.socket_mounts import without_socket_binds

OWNER_LABEL = "net.edgekeeper.owner"
OWNER_VALUE = "edgekeeper"
MODULE_LABEL = "net.edgekeeper.module"
HASH_LABEL = "net.edgekeeper.spec-hash"

_MAX_ENV = 256
# IoT Edge's management API has neither field: a module it creates is not started (edgeAgent
# starts it when the deployment wants it running) and the runtime never restarts it (edgeAgent
# does, by its own policy). So these are the defaults when a management-API spec leaves them out.
API_STATUS_DEFAULT = "stopped"
API_RESTART_DEFAULT = "never"
# Docker Engine API's AuthConfig fields
_AUTH_FIELDS = frozenset(
    {"username", "password", "serveraddress", "email", "auth", "identitytoken", "registrytoken"}
)
_MAX_AUTH_TEXT = 8192


class RestartPolicy(enum.Enum):
    NEVER = "never"
    ON_FAILURE = "on-failure"
    ON_UNHEALTHY = "on-unhealthy"
    ALWAYS = "always"


class DesiredStatus(enum.Enum):
    RUNNING = "running"
    STOPPED = "stopped"


class PullPolicy(enum.Enum):
    ON_CREATE = "on-create"
    NEVER = "never"


@dataclass(frozen=True)
class ModuleSpec:
    """One module's desired state; equal specs give equal hashes."""

    name: str
    image: str
    env: Mapping[str, str] = field(default_factory=dict)
    create_options: Mapping[str, Any] = field(default_factory=dict)
    restart_policy: RestartPolicy = RestartPolicy.ALWAYS
    status: DesiredStatus = DesiredStatus.RUNNING
    pull_policy: PullPolicy = PullPolicy.ON_CREATE
    version: str = ""
    # registry credentials for pulling the image (`settings.auth`, what edgeAgent sends for a
    # deployment's registryCredentials): a secret, kept in the store, never answered
    registry_auth: Mapping[str, str] | None = field(default=None, repr=False)

    def spec_hash(self) -> str:
        """Hash of what the container is made from; a change means the container is recreated.

        Restart policy and desired status are left out: changing them does not need a new container.
        """
        doc = {
            "image": self.image,
            "env": dict(sorted(self.env.items())),
            "createOptions": self.create_options,
            "version": self.version,
        }
        text = json.dumps(doc, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def document_hash(self) -> str:
        """Hash of the whole spec (policies and credentials included): equal specs, equal hashes."""
        text = json.dumps(self.to_api(credentials=True), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def labels(self, owner: str = OWNER_VALUE) -> dict[str, str]:
        """Labels that mark a container as made by the daemon `owner` for this spec."""
        return {OWNER_LABEL: owner, MODULE_LABEL: self.name, HASH_LABEL: self.spec_hash()}

    def to_api(self, *, credentials: bool = False) -> dict[str, Any]:
        """The management API's JSON shape; with `credentials` (for the state store only) the
        registry credentials too."""
        settings: dict[str, Any] = {"image": self.image, "createOptions": dict(self.create_options)}
        if credentials and self.registry_auth is not None:
            settings["auth"] = dict(self.registry_auth)
        return {
            "name": self.name,
            "type": "docker",
            "imagePullPolicy": self.pull_policy.value,
            "restartPolicy": self.restart_policy.value,
            "status": self.status.value,
            "version": self.version,
            "config": {
                "settings": settings,
                "env": [{"key": k, "value": v} for k, v in sorted(self.env.items())],
            },
        }

    @classmethod
    def from_api(cls, doc: object) -> ModuleSpec:
        body = _object(doc, "body")
        config = _object(body.get("config", {}), "config")
        settings = _object(config.get("settings", {}), "config.settings")
        env_list = config.get("env", [])
        if not isinstance(env_list, list):
            raise BadRequest('field \'config.env\' must be a list of {"key", "value"} objects')
        env: dict[str, str] = {}
        for index, item in enumerate(env_list):
            entry = _object(item, f"config.env[{index}]")
            key, value = entry.get("key"), entry.get("value")
            if not isinstance(key, str) or not isinstance(value, str):
                raise BadRequest(f"field 'config.env[{index}]' needs string 'key' and 'value'")
            env[key] = value
        return cls._build(
            name=body.get("name"),
            kind=body.get("type", "docker"),
            image=settings.get("image"),
            create_options=settings.get("createOptions", {}),
            env=env,
            restart=body.get("restartPolicy", API_RESTART_DEFAULT),
            status=body.get("status", API_STATUS_DEFAULT),
            pull=body.get("imagePullPolicy", "on-create"),
            version=body.get("version", ""),
            where="",
            auth=settings.get("auth"),
        )

    @classmethod
    def salvage(cls, name: str, doc: object) -> ModuleSpec:
        """What can be shown of a stored document (API shape) that no longer parses: its image
        and createOptions when they are there. For listing the module as failed, never to run."""
        body = doc if isinstance(doc, dict) else {}
        config = body.get("config")
        settings = config.get("settings") if isinstance(config, dict) else None
        settings = settings if isinstance(settings, dict) else {}
        image, options = settings.get("image"), settings.get("createOptions")
        return cls(
            name=name,
            image=image if isinstance(image, str) else "",
            create_options=options if isinstance(options, dict) else {},
        )

    @classmethod
    def from_manifest(cls, name: str, doc: object, where: str = "modules") -> ModuleSpec:
        prefix = f"{where}.{name}"
        body = _object(doc, prefix)
        settings = _object(body.get("settings", {}), f"{prefix}.settings")
        env_doc = _object(body.get("env", {}), f"{prefix}.env")
        env: dict[str, str] = {}
        for key, item in env_doc.items():
            value = item.get("value") if isinstance(item, dict) else item
            if not isinstance(value, (str, int, float, bool)):
                raise BadRequest(f"field '{prefix}.env.{key}' needs a \"value\"")
            env[key] = value if isinstance(value, str) else json.dumps(value)
        return cls._build(
            name=name,
            kind=body.get("type", "docker"),
            image=settings.get("image"),
            create_options=settings.get("createOptions", {}),
            env=env,
            restart=body.get("restartPolicy", "always"),
            status=body.get("status", "running"),
            pull=body.get("imagePullPolicy", "on-create"),
            version=body.get("version", ""),
            where=f"{prefix}.",
        )

    @classmethod
    def _build(
        cls,
        *,
        name: object,
        kind: object,
        image: object,
        create_options: object,
        env: dict[str, str],
        restart: object,
        status: object,
        pull: object,
        version: object,
        where: str,
        auth: object = None,
    ) -> ModuleSpec:
        if not isinstance(name, str) or not is_module_name(name):
            raise BadRequest(f"field '{where}name' must be {MODULE_NAME_RULE}, got {name!r}")
        if kind != "docker":
            raise BadRequest(f"field '{where}type' must be \"docker\", got {kind!r}")
        if not isinstance(image, str) or not image.strip():
            raise BadRequest(f"field '{where}settings.image' is required (an image reference)")
        if isinstance(create_options, str):
            create_options = (
                read_json(create_options, f"field '{where}settings.createOptions'")
                if create_options.strip()
                else {}
            )
        options = _object(create_options, f"{where}settings.createOptions")
        problem = shape_problem(options)
        if problem is not None:
            path = f"{where}settings.createOptions"
            path = f"{path}.{problem.field}" if problem.field else path
            raise BadRequest(f"field '{path}' must be {problem.expected}")
        options = without_socket_binds(options)
        if len(env) > _MAX_ENV:
            raise BadRequest(f"field '{where}env' has {len(env)} entries, more than {_MAX_ENV}")
        if not isinstance(version, str):
            raise BadRequest(f"field '{where}version' must be a string")
        return cls(
            name=name,
            image=image.strip(),
            env=env,
            create_options=options,
            restart_policy=_choice(RestartPolicy, restart, f"{where}restartPolicy"),
            status=_choice(DesiredStatus, status, f"{where}status"),
            pull_policy=_choice(PullPolicy, pull, f"{where}imagePullPolicy"),
            version=version,
            registry_auth=_registry_auth(auth, f"{where}config.settings.auth"),
        )


def _registry_auth(value: object, where: str) -> dict[str, str] | None:
    """Docker's `AuthConfig` (username, password, serveraddress, ...) as strings; None if absent.
    Errors never show a value: this is a secret."""
    if value is None:
        return None
    if not isinstance(value, dict) or len(value) > len(_AUTH_FIELDS):
        raise BadRequest(f"field '{where}' must be an object of registry credentials")
    unknown = sorted(set(value) - _AUTH_FIELDS)
    if unknown:
        raise BadRequest(
            f"field '{where}' has unknown field {unknown[0]!r}",
            hint=f"use {', '.join(sorted(_AUTH_FIELDS))}",
        )
    if not all(isinstance(item, str) and len(item) <= _MAX_AUTH_TEXT for item in value.values()):
        raise BadRequest(f"field '{where}' must hold strings of up to {_MAX_AUTH_TEXT} characters")
    return {key: value[key] for key in sorted(value) if value[key]}


def _object(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadRequest(f"field '{where}' must be a JSON object")
    return value


def _choice(kind: type[enum.Enum], value: object, where: str) -> Any:
    """The member of `kind` that `value` names, in any case: edgeAgent sends "On-Create" and
    "Never" for the pull policy, and aziot-edged takes them."""
    if isinstance(value, str):
        for member in kind:
            if member.value == value.lower():
                return member
    allowed = ", ".join(repr(m.value) for m in kind)
    raise BadRequest(f"field '{where}' is {value!r}; use one of {allowed}")
