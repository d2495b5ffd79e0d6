"""What the supervisor needs from a container engine: the `ContainerRuntime` protocol, its values.

The reconciler, the image collector and the status read models depend on this protocol only.
`firmware.runtime.engine.DockerEngine` satisfies it structurally; the unit tests' fake engine
(tests/peers/fake_engine.py) does too, and one conformance test holds both to the same behaviour.
Errors follow the engine's: an unknown container or image is `NotFound`, a name in use or a
running container removed without force is `Conflict`, an unreachable engine `RuntimeUnavailable`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from firmware.errors import EdgekeeperError, Unavailable
from firmware.runtime.logstream import LogFrame


class RuntimeUnavailable(Unavailable):
    """The container engine cannot be reached right now."""


class EngineError(EdgekeeperError):
    """The engine refused or failed a request; the message is the engine's own."""

    http_status = 502


@dataclass(frozen=True)
class EngineVersion:
    version: str
    api_version: str
    os: str
    arch: str


@dataclass(frozen=True)
class ContainerSummary:
    """One container as the engine lists it (`GET /containers/json`)."""

    container_id: str
    name: str
    image: str
    state: str
    status: str
    labels: Mapping[str, str]
    created: int
    image_id: str = ""


class EventSubscription(Protocol):
    """`async with runtime.subscribe(labels) as events:`, then `async for event in events`.

    Entering waits until the engine accepted the subscription, so nothing after it is missed.
    Events are the engine's JSON objects (`Action`, `id`, `Actor.Attributes`).
    """

    async def __aenter__(self) -> AsyncIterator[dict[str, Any]]: ...

    async def __aexit__(self, *exc_info: object) -> None: ...


class ContainerRuntime(Protocol):
    """The container operations the supervisor uses."""

    @property
    def socket_path(self) -> str:
        """Where the engine listens (shown in status and errors)."""
        ...

    async def negotiate(self) -> str:
        """Reach the engine and agree on an API version; returns it ("1.43")."""
        ...

    async def version(self) -> EngineVersion: ...

    async def list_containers(
        self, labels: Mapping[str, str] | None = None
    ) -> list[ContainerSummary]:
        """Every container (running or not) carrying all of `labels`."""
        ...

    async def create_container(self, name: str, body: Mapping[str, Any]) -> str:
        """Create from a Docker create `body`; returns the new container's id."""
        ...

    async def start(self, container: str) -> None:
        """Start; a container already running is left as it is."""
        ...

    async def stop(self, container: str, grace: int | None = None) -> None:
        """Stop within `grace` seconds; a stopped container is left as it is."""
        ...

    async def restart(self, container: str, grace: int | None = None) -> None: ...

    async def remove(self, container: str, *, force: bool = False) -> None:
        """Remove; a running container only with `force` (`Conflict` otherwise)."""
        ...

    async def inspect(self, container: str) -> dict[str, Any]:
        """The engine's document for a container (`State`, `Config`, ...)."""
        ...

    async def stats(self, container: str) -> dict[str, Any]:
        """One resource-usage sample (`memory_stats`, `cpu_stats`, `precpu_stats`)."""
        ...

    async def ensure_network(self, name: str) -> bool:
        """Create the bridge network `name` unless it exists; True if it was created."""
        ...

    def logs(
        self,
        container: str,
        *,
        tail: int | None = None,
        since: int | None = None,
        until: int | None = None,
        timestamps: bool = False,
        follow: bool = False,
    ) -> AsyncIterator[LogFrame]:
        """The container's output, stdout and stderr in order; `follow` until it stops."""
        ...

    def subscribe(self, labels: Mapping[str, str] | None = None) -> EventSubscription:
        """Container events for containers carrying all of `labels`."""
        ...

    def pull(
        self, reference: str, credentials: Mapping[str, str] | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """Pull an image, yielding the engine's progress objects; `EngineError` if it fails."""
        ...

    async def inspect_image(self, reference: str) -> dict[str, Any]: ...

    async def list_images(self) -> list[dict[str, Any]]:
        """Every image as the engine lists it (`Id`, `RepoTags`)."""
        ...

    async def remove_image(self, reference: str) -> None:
        """Untag or remove an image, never forced: `Conflict` while a container uses it."""
        ...
