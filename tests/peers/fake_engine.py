"""`FakeEngine`: an in-memory container engine for unit tests, satisfying `ContainerRuntime`.

It behaves as dockerd does in everything the supervisor relies on, and
tests/integration/runtime/test_container_runtime.py holds it to that against a real dockerd:
containers by id, name or id prefix; labels and label filters; states and the listing's status
text ("Exited (3) ..."); events (`create`, `start`, `kill`, `die` with `exitCode`, `stop`,
`restart`, `destroy`); per-line logs with tail, since, timestamps and follow; images by tag or
id, untagging, removal refused while a container uses the image; `NotFound` for unknown
containers and images, `Conflict` for a name in use or a running container removed without force,
`RuntimeUnavailable` while the engine is away.

Containers run no programs. A container runs until stopped, unless a `Program` registered for its
command (`FakeEngine.program`) says what it writes and with which code it exits. Tests may also
make a container exit (`exit`), and the engine go away and come back (`disconnect`, `reconnect`).
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import itertools
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from firmware.errors import Conflict, NotFound
from firmware.runtime.container import (
    ContainerSummary,
    EngineError,
    EngineVersion,
    RuntimeUnavailable,
)
from firmware.runtime.logstream import LogFrame

NEVER = "0001-01-01T00:00:00Z"
STOP_EXIT_CODE = 137  # what a `sleep` as PID 1 exits with when stopped (SIGTERM ignored, SIGKILL)


@dataclass(frozen=True)
class Program:
    """What a container running a given command does: writes `output` (one frame every
    `interval` seconds), then exits with `exit_code`, or runs on until stopped if that is None."""

    output: tuple[LogFrame, ...] = ()
    interval: float = 0.0
    exit_code: int | None = None


@dataclass
class _Line:
    at: float
    frame: LogFrame


@dataclass
class _Container:
    container_id: str
    name: str
    image: str
    image_id: str
    body: dict[str, Any]
    created: float
    state: str = "created"
    pid: int = 0
    exit_code: int = 0
    started_at: str = NEVER
    finished_at: str = NEVER
    lines: list[_Line] = field(default_factory=list)
    run: asyncio.Task[None] | None = None

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.body.get("Labels") or {})

    @property
    def command(self) -> tuple[str, ...]:
        return tuple(self.body.get("Cmd") or ())


@dataclass
class _Image:
    image_id: str
    tags: list[str]


class _Subscription:
    def __init__(self, engine: FakeEngine, labels: Mapping[str, str]) -> None:
        self._engine = engine
        self._labels = dict(labels)
        self._queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

    async def __aenter__(self) -> AsyncIterator[dict[str, Any]]:
        self._engine._check()
        self._engine._subscribers.append(self)
        return self._events()

    async def __aexit__(self, *exc_info: object) -> None:
        if self in self._engine._subscribers:
            self._engine._subscribers.remove(self)

    def offer(self, event: dict[str, Any]) -> None:
        attributes = event["Actor"]["Attributes"]
        if all(attributes.get(k) == v for k, v in self._labels.items()):
            self._queue.put_nowait(event)

    def end(self) -> None:
        self._queue.put_nowait(None)

    async def _events(self) -> AsyncIterator[dict[str, Any]]:
        while (event := await self._queue.get()) is not None:
            yield event


class FakeEngine:
    """An in-memory `ContainerRuntime` with dockerd's observable behaviour."""

    def __init__(self, socket_path: str = "/run/fake-docker.sock") -> None:
        self.socket_path = socket_path
        self.containers: dict[str, _Container] = {}
        self.images: dict[str, _Image] = {}
        self.published: set[str] = set()  # references a pull finds in the "registry"
        self.log_requests: list[dict[str, Any]] = []  # the options of every logs() call
        self.following = 0  # log streams following a container right now
        self.networks: set[str] = set()  # bridge networks made by ensure_network
        self.pulls: list[tuple[str, dict[str, str] | None]] = []  # (reference, credentials)
        self._programs: dict[tuple[str, ...], Program] = {}
        self._subscribers: list[_Subscription] = []
        self._changed: list[asyncio.Future[None]] = []
        self._reachable = True
        self._ids = itertools.count(1)

    # -- what tests arrange ------------------------------------------------------------------------

    def add_image(self, tag: str) -> str:
        """A new image tagged `tag`; returns its id."""
        digest = hashlib.sha256(tag.encode()).hexdigest()
        image = _Image(f"sha256:{digest}", [_tagged(tag)])
        self.images[image.image_id] = image
        return image.image_id

    def tag(self, source: str, tag: str) -> None:
        self._image(source).tags.append(_tagged(tag))

    def program(self, command: Sequence[str], program: Program) -> None:
        """Containers whose `Cmd` is `command` behave as `program` once started."""
        self._programs[tuple(command)] = program

    def exit(self, container: str, code: int) -> None:
        """The container's process ends with `code` (a crash, when not 0)."""
        self._exited(self._container(container), code)

    def disconnect(self) -> None:
        """The engine goes away: every call fails with `RuntimeUnavailable`, event streams end."""
        self._reachable = False
        for subscriber in list(self._subscribers):
            subscriber.end()
        self._subscribers.clear()

    def reconnect(self) -> None:
        self._reachable = True

    # -- ContainerRuntime ------------------------------------------------------------------------

    async def negotiate(self) -> str:
        self._check()
        return "1.43"

    async def version(self) -> EngineVersion:
        self._check()
        return EngineVersion("24.0.5-fake", "1.43", "linux", "x86_64")

    async def list_containers(
        self, labels: Mapping[str, str] | None = None
    ) -> list[ContainerSummary]:
        self._check()
        wanted = dict(labels or {})
        return [
            ContainerSummary(
                container_id=c.container_id,
                name=c.name,
                image=c.image,
                state=c.state,
                status=_status_text(c),
                labels=c.labels,
                created=int(c.created),
                image_id=c.image_id,
            )
            for c in sorted(self.containers.values(), key=lambda c: -c.created)
            if all(c.labels.get(k) == v for k, v in wanted.items())
        ]

    async def create_container(self, name: str, body: Mapping[str, Any]) -> str:
        self._check()
        reference = str(body.get("Image", ""))
        image = self._image(reference)
        for other in self.containers.values():
            if other.name == name:
                raise Conflict(
                    f'Conflict. The container name "/{name}" is already in use by container '
                    f'"{other.container_id}". You have to remove (or rename) that container to '
                    "be able to reuse that name."
                )
        serial = next(self._ids)
        container_id = hashlib.sha256(f"{name}/{serial}".encode()).hexdigest()
        container = _Container(
            container_id=container_id,
            name=name,
            image=reference,
            image_id=image.image_id,
            body=dict(body),
            created=time.time(),
        )
        self.containers[container_id] = container
        self._emit(container, "create")
        return container_id

    async def start(self, container: str) -> None:
        self._check()
        self._start(self._container(container))

    async def stop(self, container: str, grace: int | None = None) -> None:
        self._check()
        found = self._container(container)
        if found.state == "running":
            self._emit(found, "kill", signal="15")
            self._exited(found, STOP_EXIT_CODE)
            self._emit(found, "stop")

    async def restart(self, container: str, grace: int | None = None) -> None:
        self._check()
        found = self._container(container)
        if found.state == "running":
            self._emit(found, "kill", signal="15")
            self._exited(found, STOP_EXIT_CODE)
            self._emit(found, "stop")
        self._start(found)
        self._emit(found, "restart")

    async def remove(self, container: str, *, force: bool = False) -> None:
        self._check()
        found = self._container(container)
        if found.state == "running":
            if not force:
                raise Conflict(
                    f"You cannot remove a running container {found.container_id}. Stop the "
                    "container before attempting removal or force remove"
                )
            self._emit(found, "kill", signal="9")
            self._exited(found, STOP_EXIT_CODE)
        del self.containers[found.container_id]
        self._emit(found, "destroy")
        self._wake()

    async def inspect(self, container: str) -> dict[str, Any]:
        self._check()
        found = self._container(container)
        return {
            "Id": found.container_id,
            "Name": f"/{found.name}",
            "Image": found.image_id,
            "State": {
                "Status": found.state,
                "Running": found.state == "running",
                "Paused": False,
                "Restarting": False,
                "Dead": found.state == "dead",
                "Pid": found.pid,
                "ExitCode": found.exit_code,
                "Error": "",
                "StartedAt": found.started_at,
                "FinishedAt": found.finished_at,
            },
            "Config": {
                "Image": found.image,
                "Cmd": list(found.command),
                "Env": list(found.body.get("Env") or []),
                "Labels": found.labels,
                "Tty": bool(found.body.get("Tty", False)),
            },
            "HostConfig": dict(found.body.get("HostConfig") or {}),
        }

    async def stats(self, container: str) -> dict[str, Any]:
        self._check()
        found = self._container(container)
        ticks = int((time.time() - found.created) * 1e9)
        return {
            "memory_stats": {
                "usage": 6_291_456,
                "limit": 2_147_483_648,
                "stats": {"inactive_file": 2_097_152},
            },
            "cpu_stats": {
                "cpu_usage": {"total_usage": ticks // 100},
                "system_cpu_usage": ticks,
                "online_cpus": 2,
            },
            "precpu_stats": {"cpu_usage": {"total_usage": 0}, "system_cpu_usage": 0},
        }

    async def logs(
        self,
        container: str,
        *,
        tail: int | None = None,
        since: int | None = None,
        until: int | None = None,
        timestamps: bool = False,
        follow: bool = False,
    ) -> AsyncIterator[LogFrame]:
        self.log_requests.append(
            {"tail": tail, "since": since, "timestamps": timestamps, "follow": follow}
        )
        self._check()
        found = self._container(container)
        lines = [
            line
            for line in found.lines
            if (since is None or line.at >= since) and (until is None or line.at <= until)
        ]
        if tail is not None:
            lines = lines[-tail:] if tail > 0 else []
        sent = len(found.lines)
        self.following += follow
        try:
            for line in lines:
                yield _shown(line, timestamps)
            while follow and found.state == "running":
                await self._next_change()
                for line in found.lines[sent:]:
                    yield _shown(line, timestamps)
                sent = len(found.lines)
        finally:
            self.following -= follow

    def subscribe(self, labels: Mapping[str, str] | None = None) -> _Subscription:
        return _Subscription(self, labels or {})

    async def pull(
        self, reference: str, credentials: Mapping[str, str] | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        self._check()
        self.pulls.append((reference, dict(credentials) if credentials else None))
        wanted = _tagged(reference)
        if wanted not in self.published:
            raise EngineError(
                f'pulling {reference} failed: Get "https://{reference.split("/")[0]}/v2/": '
                "dial tcp: lookup failed: no such host"
            )
        yield {"status": f"Pulling from {wanted.rsplit(':', 1)[0]}", "id": wanted.split(":")[-1]}
        yield {"status": "Pull complete", "id": "layer0"}
        self.add_image(wanted)
        yield {"status": f"Status: Downloaded newer image for {wanted}"}

    async def ensure_network(self, name: str) -> bool:
        self._check()
        if name in self.networks:
            return False
        self.networks.add(name)
        return True

    async def inspect_image(self, reference: str) -> dict[str, Any]:
        self._check()
        image = self._image(reference)
        return {"Id": image.image_id, "RepoTags": list(image.tags)}

    async def list_images(self) -> list[dict[str, Any]]:
        self._check()
        return [{"Id": i.image_id, "RepoTags": list(i.tags)} for i in self.images.values()]

    async def remove_image(self, reference: str) -> None:
        self._check()
        image = self._image(reference)
        by_tag = _tagged(reference) in image.tags
        if by_tag and len(image.tags) > 1:
            image.tags.remove(_tagged(reference))
            return
        if not by_tag and len(image.tags) > 1:
            raise Conflict(
                f"conflict: unable to delete {image.image_id[7:19]} (must be forced) - image is "
                "referenced in multiple repositories"
            )
        users = [c for c in self.containers.values() if c.image_id == image.image_id]
        if users:
            raise Conflict(
                f"conflict: unable to remove repository reference {reference!r} (must force) - "
                f"container {users[0].container_id[:12]} is using its referenced image"
            )
        del self.images[image.image_id]

    # -- the engine's insides ----------------------------------------------------------------------

    def _check(self) -> None:
        if not self._reachable:
            raise RuntimeUnavailable(
                f"the container engine at {self.socket_path} cannot be reached (connection "
                "refused)",
                hint="is dockerd running? check [runtime] uri in config.toml",
            )

    def _container(self, reference: str) -> _Container:
        found = self.containers.get(reference)
        if found is None:
            matches = [
                c
                for c in self.containers.values()
                if c.name == reference or c.container_id.startswith(reference)
            ]
            found = matches[0] if len(matches) == 1 and reference else None
        if found is None:
            raise NotFound(f"No such container: {reference}")
        return found

    def _image(self, reference: str) -> _Image:
        tag = _tagged(reference)
        for image in self.images.values():
            if tag in image.tags or image.image_id == reference:
                return image
        digits = reference.removeprefix("sha256:")
        if digits and all(c in "0123456789abcdef" for c in digits):
            for image in self.images.values():
                if image.image_id.removeprefix("sha256:").startswith(digits):
                    return image
        raise NotFound(f"No such image: {reference}")

    def _start(self, container: _Container) -> None:
        if container.state == "running":
            return
        container.state = "running"
        container.pid = 40000 + next(self._ids)
        container.exit_code = 0
        container.started_at = _now()
        self._emit(container, "start")
        program = self._programs.get(container.command)
        if program is not None:
            container.run = asyncio.get_running_loop().create_task(self._run(container, program))
        self._wake()

    async def _run(self, container: _Container, program: Program) -> None:
        for frame in program.output:
            if container.state != "running":
                return
            for text in frame.data.splitlines(keepends=True):
                container.lines.append(_Line(time.time(), LogFrame(frame.stream, text)))
            self._wake()
            await asyncio.sleep(program.interval)
        if program.exit_code is not None and container.state == "running":
            self._exited(container, program.exit_code)

    def _exited(self, container: _Container, code: int) -> None:
        if container.state != "running":
            return
        if container.run is not None and container.run is not asyncio.current_task():
            container.run.cancel()
        container.run = None
        container.state = "exited"
        container.pid = 0
        container.exit_code = code
        container.finished_at = _now()
        self._emit(container, "die", exitCode=str(code))
        self._wake()

    def _emit(self, container: _Container, action: str, **extra: str) -> None:
        now = time.time()
        event = {
            "status": action,
            "id": container.container_id,
            "from": container.image,
            "Type": "container",
            "Action": action,
            "Actor": {
                "ID": container.container_id,
                "Attributes": {
                    **container.labels,
                    "image": container.image,
                    "name": container.name,
                    **extra,
                },
            },
            "scope": "local",
            "time": int(now),
            "timeNano": int(now * 1e9),
        }
        for subscriber in list(self._subscribers):
            subscriber.offer(event)

    def _wake(self) -> None:
        waiters, self._changed = self._changed, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def _next_change(self) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._changed.append(waiter)
        await waiter


def _tagged(reference: str) -> str:
    """`reference` with the ":latest" the engine implies when it names no tag."""
    last = reference.rsplit("/", 1)[-1]
    if reference.startswith("sha256:") or "@" in reference or ":" in last:
        return reference
    return f"{reference}:latest"


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _status_text(container: _Container) -> str:
    if container.state == "running":
        return "Up Less than a second"
    if container.state == "exited":
        return f"Exited ({container.exit_code}) Less than a second ago"
    return container.state.capitalize()


def _shown(line: _Line, timestamps: bool) -> LogFrame:
    if not timestamps:
        return line.frame
    moment = datetime.datetime.fromtimestamp(line.at, datetime.UTC)
    stamp = moment.strftime("%Y-%m-%dT%H:%M:%S.%f000Z").encode()
    return LogFrame(line.frame.stream, stamp + b" " + line.frame.data)
