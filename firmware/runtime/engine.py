"""`DockerEngine`: the `ContainerRuntime` protocol over the Docker Engine API on its unix socket.

The engine's API version is negotiated once per connection life: `/_ping` says what the engine
speaks, we use the lower of that and the newest version we know, and refuse engines older than
1.40. Engine answers map onto the error hierarchy: 404 is `NotFound`, 409 `Conflict`, a socket
that is missing or refuses us `RuntimeUnavailable`, anything else `EngineError` with the engine's
message.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack
from dataclasses import replace
from typing import Any
from urllib.parse import quote, urlencode

from firmware.errors import Conflict, EdgekeeperError, NotFound
from firmware.http.client import Answer, AnswerStream, Deadlines, HttpClient, UnixEndpoint
from firmware.http.errors import ExchangeFailed
from firmware.runtime.container import (
    ContainerSummary,
    EngineError,
    EngineVersion,
    RuntimeUnavailable,
)
from firmware.runtime.logstream import LogDemuxer, LogFrame, Stream

MIN_API = (1, 40)
MAX_API = (1, 43)


class DockerEngine:
    """The Docker Engine API (1.40 and later) over a unix socket."""

    def __init__(self, socket_path: str, *, deadlines: Deadlines | None = None) -> None:
        self.socket_path = socket_path
        # An engine answers within a minute or is stuck (requests that take longer say so).
        self._http = HttpClient(
            UnixEndpoint(socket_path),
            deadlines=deadlines or Deadlines(connect_s=5.0, read_s=60.0, overall_s=60.0),
            headers=[("host", "docker")],
        )
        self._prefix: str | None = None

    # -- version negotiation -------------------------------------------------------------------

    async def negotiate(self) -> str:
        """Pick the API version to speak; returns it as "1.41"."""
        rsp = await self._call("GET", "/_ping", versioned=False)
        offered = rsp.headers.get("api-version", "")
        try:
            major, minor = (int(part) for part in offered.split("."))
        except ValueError:
            raise EngineError(
                f"engine at {self.socket_path} did not say its API version",
                hint="is that socket a Docker engine?",
            ) from None
        if (major, minor) < MIN_API:
            raise EngineError(
                f"Docker Engine API {offered} at {self.socket_path} is older than "
                f"{MIN_API[0]}.{MIN_API[1]}",
                hint="upgrade the container engine (Docker 19.03 or later)",
            )
        chosen = min((major, minor), MAX_API)
        self._prefix = f"/v{chosen[0]}.{chosen[1]}"
        return f"{chosen[0]}.{chosen[1]}"

    async def ping(self) -> None:
        await self._call("GET", "/_ping", versioned=False)

    async def version(self) -> EngineVersion:
        doc = await self._object("GET", "/version")
        return EngineVersion(
            version=doc.get("Version", ""),
            api_version=doc.get("ApiVersion", ""),
            os=doc.get("Os", ""),
            arch=doc.get("Arch", ""),
        )

    async def info(self) -> dict[str, Any]:
        return await self._object("GET", "/info")

    # -- containers ------------------------------------------------------------------------------

    async def list_containers(
        self, labels: Mapping[str, str] | None = None
    ) -> list[ContainerSummary]:
        filters = {"label": [f"{k}={v}" for k, v in (labels or {}).items()]}
        docs = await self._list("GET", "/containers/json", query={"all": True, "filters": filters})
        return [
            ContainerSummary(
                container_id=doc["Id"],
                name=(doc.get("Names") or ["/"])[0].lstrip("/"),
                image=doc.get("Image", ""),
                state=doc.get("State", ""),
                status=doc.get("Status", ""),
                labels=doc.get("Labels") or {},
                created=int(doc.get("Created", 0)),
                image_id=doc.get("ImageID", ""),
            )
            for doc in docs
        ]

    async def create_container(self, name: str, body: Mapping[str, Any]) -> str:
        doc = await self._object("POST", "/containers/create", query={"name": name}, body=body)
        return str(doc["Id"])

    async def start(self, container: str) -> None:
        await self._call("POST", f"/containers/{container}/start")

    async def stop(self, container: str, grace: int | None = None) -> None:
        """Stop within `grace` seconds, or the container's own StopTimeout (default 10 s)."""
        await self._call(
            "POST", f"/containers/{container}/stop", query={"t": grace}, limit=_grace(grace)
        )

    async def restart(self, container: str, grace: int | None = None) -> None:
        await self._call(
            "POST",
            f"/containers/{container}/restart",
            query={"t": grace},
            limit=_grace(grace),
        )

    async def kill(self, container: str, signal: str = "SIGKILL") -> None:
        await self._call("POST", f"/containers/{container}/kill", query={"signal": signal})

    async def remove(self, container: str, *, force: bool = False) -> None:
        await self._call("DELETE", f"/containers/{container}", query={"force": force, "v": True})

    async def inspect(self, container: str) -> dict[str, Any]:
        return await self._object("GET", f"/containers/{container}/json")

    async def ensure_network(self, name: str) -> bool:
        try:
            await self._object("GET", f"/networks/{quote(name, safe='')}")
            return False
        except NotFound:
            pass
        try:
            body = {"Name": name, "Driver": "bridge", "CheckDuplicate": True}
            await self._object("POST", "/networks/create", body=body)
        except Conflict:
            return False
        return True

    async def wait(self, container: str) -> int:
        doc = await self._object("POST", f"/containers/{container}/wait", limit=None)
        return int(doc.get("StatusCode", -1))

    async def stats(self, container: str) -> dict[str, Any]:
        return await self._object("GET", f"/containers/{container}/stats", query={"stream": False})

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
        query = {
            "stdout": True,
            "stderr": True,
            "follow": follow,
            "timestamps": timestamps,
            "tail": "all" if tail is None else tail,
            "since": since,
            "until": until,
        }
        tty = (await self.inspect(container)).get("Config", {}).get("Tty", False)
        async with self._stream("GET", f"/containers/{container}/logs", query=query) as chunks:
            demuxer = LogDemuxer()
            async for chunk in chunks:
                if tty:
                    yield LogFrame(Stream.STDOUT, chunk)
                    continue
                for frame in demuxer.feed(chunk):
                    yield frame

    def subscribe(self, labels: Mapping[str, str] | None = None) -> _EventFeed:
        """`async with engine.subscribe(labels) as events:` then `async for event in events`.

        Entering the block waits until the engine has accepted the subscription, so nothing that
        happens after it is missed.
        """
        filters: dict[str, list[str]] = {"type": ["container"]}
        if labels:
            filters["label"] = [f"{k}={v}" for k, v in labels.items()]
        return _EventFeed(self._stream("GET", "/events", query={"filters": filters}))

    # -- images ------------------------------------------------------------------------------------

    async def pull(
        self, reference: str, credentials: Mapping[str, str] | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        image, _, tag = reference.rpartition(":") if _has_tag(reference) else (reference, "", "")
        headers = {}
        if credentials:
            auth = json.dumps(dict(credentials), separators=(",", ":")).encode()
            headers["X-Registry-Auth"] = base64.urlsafe_b64encode(auth).decode()
        query = {"fromImage": image or reference, "tag": tag or "latest"}
        async with self._stream("POST", "/images/create", query=query, headers=headers) as chunks:
            async for progress in _json_lines(chunks):
                if "error" in progress:
                    raise EngineError(f"pulling {reference} failed: {progress['error']}")
                yield progress

    async def inspect_image(self, reference: str) -> dict[str, Any]:
        return await self._object("GET", f"/images/{reference}/json")

    async def list_images(self) -> list[dict[str, Any]]:
        return await self._list("GET", "/images/json")

    async def remove_image(self, reference: str) -> None:
        await self._call("DELETE", f"/images/{reference}")

    # -- plumbing ----------------------------------------------------------------------------------

    async def _object(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """The engine's answer, which must be a JSON object."""
        doc = (await self._call(method, path, **kwargs)).json()
        if not isinstance(doc, dict):
            raise EngineError(f"the engine answered {method} {path} with no JSON object")
        return doc

    async def _list(self, method: str, path: str, **kwargs: Any) -> list[dict[str, Any]]:
        """The engine's answer, which must be a JSON array of objects."""
        doc = (await self._call(method, path, **kwargs)).json()
        if not isinstance(doc, list) or not all(isinstance(item, dict) for item in doc):
            raise EngineError(f"the engine answered {method} {path} with no JSON array of objects")
        return doc

    async def _call(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, object] | None = None,
        body: object = None,
        limit: float | None = 0.0,
        versioned: bool = True,
    ) -> Answer:
        """One request and its whole answer within the engine's deadlines; a request that keeps
        the engine busy (a stop, a wait) gives how long that may take as `limit` (None: no
        bound)."""
        target = await self._target(path) if versioned else path
        deadlines = self._http.deadlines
        if limit is None or limit > 0:
            deadlines = replace(deadlines, read_s=limit, overall_s=limit)
        headers, payload = _payload(body)
        try:
            rsp = await self._http.request(
                method,
                target + _query_string(query),
                headers=headers,
                body=payload,
                deadlines=deadlines,
            )
        except ExchangeFailed as exc:
            self._prefix = None
            raise self._unavailable(exc) from exc
        if rsp.status >= 400:
            raise _engine_error(rsp.status, rsp.body, f"{method} {path}")
        return rsp

    def _stream(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, object] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> _EngineStream:
        return _EngineStream(self, method, path, query or {}, headers or {})

    async def _target(self, path: str) -> str:
        if self._prefix is None:
            await self.negotiate()
        return f"{self._prefix}{path}"

    def _unavailable(self, exc: Exception) -> RuntimeUnavailable:
        return RuntimeUnavailable(
            f"the container engine at {self.socket_path} cannot be reached ({exc})",
            hint="is dockerd running? check [runtime] uri in config.toml",
        )


class _EngineStream:
    """`async with` over a streamed engine answer, yielding its body chunks.

    The answer's head must come within the engine's read deadline. So must each chunk of its
    body, unless the request follows (events, pulls, logs without follow=false): those go quiet
    for as long as nothing happens.
    """

    def __init__(
        self,
        engine: DockerEngine,
        method: str,
        path: str,
        query: Mapping[str, object],
        headers: Mapping[str, str],
    ) -> None:
        self._engine, self._method, self._path = engine, method, path
        self._query, self._headers = query, headers
        self._exchange = AsyncExitStack()

    async def __aenter__(self) -> AsyncIterator[bytes]:
        engine = self._engine
        target = await engine._target(self._path) + _query_string(self._query)
        answer = engine._http.stream(
            self._method,
            target,
            headers=list(self._headers.items()),
            deadlines=replace(engine._http.deadlines, overall_s=None),
            follow=bool(self._query.get("follow", True)),
        )
        try:
            rsp = await self._exchange.enter_async_context(answer)
            if rsp.status < 400:
                return self._chunks(rsp)
            try:
                body = await rsp.read()
            finally:
                await self._exchange.aclose()
        except ExchangeFailed as exc:
            raise engine._unavailable(exc) from exc
        raise _engine_error(rsp.status, body, f"{self._method} {self._path}")

    async def _chunks(self, rsp: AnswerStream) -> AsyncIterator[bytes]:
        try:
            async for chunk in rsp:
                yield chunk
        except ExchangeFailed as exc:
            raise self._engine._unavailable(exc) from exc

    async def __aexit__(self, *exc_info: object) -> None:
        await self._exchange.aclose()


class _EventFeed:
    """The engine's event stream as parsed JSON objects, inside `async with`."""

    def __init__(self, stream: _EngineStream) -> None:
        self._stream = stream

    async def __aenter__(self) -> AsyncIterator[dict[str, Any]]:
        return _json_lines(await self._stream.__aenter__())

    async def __aexit__(self, *exc_info: object) -> None:
        await self._stream.__aexit__(*exc_info)


def _query_string(query: Mapping[str, object] | None) -> str:
    """`?name=value&...` the way the engine reads it: booleans as 1/0, lists and objects as
    JSON, None left out ("" when nothing is left)."""
    fields: dict[str, str] = {}
    for name, value in (query or {}).items():
        if value is None:
            continue
        if isinstance(value, bool):
            fields[name] = "1" if value else "0"
        elif isinstance(value, (dict, list)):
            fields[name] = json.dumps(value, separators=(",", ":"))
        else:
            fields[name] = str(value)
    return f"?{urlencode(fields)}" if fields else ""


def _payload(body: object) -> tuple[list[tuple[str, str]], bytes | None]:
    """Headers and bytes for a request body: bytes as they are, anything else as JSON."""
    if body is None:
        return [], None
    if isinstance(body, bytes):
        return [("content-type", "application/json")], body
    return [("content-type", "application/json")], json.dumps(body, separators=(",", ":")).encode()


async def _json_lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[dict[str, Any]]:
    pending = b""
    async for chunk in chunks:
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            if line.strip():
                yield json.loads(line)


def _grace(stop_timeout: int | None) -> float:
    """How long to wait for the engine to answer a stop that may take `stop_timeout` seconds."""
    return (10 if stop_timeout is None else stop_timeout) + 60.0


def _has_tag(reference: str) -> bool:
    return ":" in reference.rsplit("/", 1)[-1] and "@" not in reference


def _engine_error(status: int, body: bytes, what: str) -> EdgekeeperError:
    try:
        message = json.loads(body).get("message", "") if body else ""
    except (ValueError, AttributeError):
        message = body.decode("utf-8", "replace")[:200]
    message = message or f"{what} failed with HTTP {status}"
    if status == 404:
        return NotFound(message)
    if status == 409:
        return Conflict(message)
    return EngineError(f"container engine: {message}")
