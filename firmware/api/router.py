"""Routing of local API requests to handlers, and the one place errors become HTTP answers.

`Router.add` registers `async def handler(request, **path_params) -> ApiResponse` for a method,
a path pattern such as `/modules/{name}/genid/{genid}/sign` and the listeners it is served on.
Every route is served at every supported api-version, as edgelet serves them to the clients that
fall back to older versions. `Router.dispatch` checks the api-version, finds the route (404, or
405 with Allow), calls the handler and renders what it raises: an `EdgekeeperError` as
`{"message": render()}` with its `http_status`, anything else as a logged 500 "internal error".
The HTTP server, the console and tests all go through `dispatch`.

An internal error is a bug, never a client's doing (request parsing raises `BadRequest`), so its
traceback is logged; but only once a minute per place it was raised, with one line for each
repeat, so a bug a client can trigger over and over cannot flood the log.
"""

from __future__ import annotations

import logging
import math
import time
import traceback
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from urllib.parse import unquote

from firmware.api import versions
from firmware.api.model import JSON_TYPE, ApiRequest, ApiResponse
from firmware.errors import BadRequest, EdgekeeperError, TooManyRequests

Handler = Callable[..., Awaitable[ApiResponse]]
# A module's routes as (method, pattern, handler), served on the management listener.
RouteTable = list[tuple[str, str, Handler]]

log = logging.getLogger("edgekeeper.api")

# Listeners whose routes the console may also use: it offers the management command set.
_CONSOLE_MIRRORS = "mgmt"
# How long a traceback stands for the repeats of the same internal error.
TRACEBACK_QUIET_S = 60.0
_MAX_TRACEBACK_PLACES = 256
# The most segments a route pattern may have: the lookup of routes by shape stays this small.
_MAX_SEGMENTS = 16


@dataclass(frozen=True)
class _Segment:
    text: str
    is_param: bool


@dataclass(frozen=True)
class Route:
    method: str
    pattern: str
    handler: Handler
    listeners: frozenset[str]
    segments: tuple[_Segment, ...]

    def match(self, parts: list[str]) -> dict[str, str] | None:
        if len(parts) != len(self.segments):
            return None
        params: dict[str, str] = {}
        for segment, part in zip(self.segments, parts, strict=True):
            if segment.is_param:
                if not part:
                    return None
                params[segment.text] = part
            elif segment.text != part:
                return None
        return params

    @property
    def literal_count(self) -> int:
        return sum(not segment.is_param for segment in self.segments)


class Router:
    """The routes of the local APIs, shared by every listener."""

    def __init__(self, supported_versions: Iterable[str] = versions.SUPPORTED) -> None:
        self.supported_versions = tuple(supported_versions)
        self._routes: list[Route] = []
        # (listener kind, segment count) -> the routes that can match such a path
        self._by_shape: dict[tuple[str, int], tuple[Route, ...]] = {}
        # (exception type, file, line) of an internal error -> when its traceback was logged
        self._tracebacks: dict[tuple[str, str, int], float] = {}

    def add(
        self,
        method: str,
        pattern: str,
        handler: Handler,
        *,
        listeners: Iterable[str] = ("mgmt",),
    ) -> None:
        """Serve `handler` for `method` on `pattern` to the given listeners (kinds, e.g. "mgmt",
        "workload"); the console is allowed wherever "mgmt" is."""
        method = method.upper()
        segments = _parse_pattern(pattern)
        if len(segments) > _MAX_SEGMENTS:
            raise ValueError(f"route pattern {pattern!r} has more than {_MAX_SEGMENTS} segments")
        allowed = set(listeners)
        if _CONSOLE_MIRRORS in allowed:
            allowed.add("console")
        for route in self._routes:
            if route.method == method and route.segments == segments and route.listeners & allowed:
                raise ValueError(f"route {method} {pattern} is already registered")
        self._routes.append(Route(method, pattern, handler, frozenset(allowed), segments))
        self._by_shape.clear()

    def routes(self) -> tuple[Route, ...]:
        return tuple(self._routes)

    async def dispatch(self, request: ApiRequest) -> ApiResponse:
        """Answer one request; never raises."""
        try:
            return _encoded(await self._dispatch(request))
        except TooManyRequests as error:
            wait = str(max(1, math.ceil(error.retry_after_s)))
            return ApiResponse.error(error.http_status, error.render(), (("Retry-After", wait),))
        except EdgekeeperError as error:
            return ApiResponse.error(error.http_status, error.render())
        except Exception as error:
            self._log_internal_error(request, error)
            return ApiResponse.error(500, "internal error")

    def _log_internal_error(self, request: ApiRequest, error: Exception) -> None:
        frames = traceback.extract_tb(error.__traceback__)
        raised_at = frames[-1] if frames else None
        where = (
            type(error).__name__,
            raised_at.filename if raised_at else "?",
            (raised_at.lineno or 0) if raised_at else 0,
        )
        now = time.monotonic()
        logged = self._tracebacks.get(where)
        if logged is not None and now - logged < TRACEBACK_QUIET_S:
            log.error(
                "internal error answering %s %s: %s at %s:%d again (traceback logged before)",
                request.method,
                request.path,
                *where,
            )
            return
        if len(self._tracebacks) >= _MAX_TRACEBACK_PLACES:
            self._tracebacks.clear()
        self._tracebacks[where] = now
        log.error(
            "internal error answering %s %s",
            request.method,
            request.path,
            exc_info=(type(error), error, error.__traceback__),
        )

    async def _dispatch(self, request: ApiRequest) -> ApiResponse:
        self._check_version(request)
        if not request.path.startswith("/"):
            return ApiResponse.error(404, f"no such path: {request.path}")
        parts = _split_path(request.path)
        matches: list[tuple[Route, dict[str, str]]] = []
        for route in self._shaped(request.listener_kind, len(parts)):
            params = route.match(parts)
            if params is not None:
                matches.append((route, params))
        if not matches:
            return ApiResponse.error(404, f"no such path: {request.path}")
        method = request.method.upper()
        for_method = [(route, params) for route, params in matches if route.method == method]
        if not for_method:
            allowed = ", ".join(sorted({route.method for route, _ in matches}))
            return ApiResponse.error(
                405,
                f"method {method} is not allowed on {request.path}; allowed: {allowed}",
                headers=(("Allow", allowed),),
            )
        route, params = max(for_method, key=lambda match: match[0].literal_count)
        return await route.handler(request, **params)

    def _shaped(self, kind: str, length: int) -> tuple[Route, ...]:
        """The routes served to listeners of `kind` whose patterns have `length` segments."""
        if length > _MAX_SEGMENTS:
            return ()
        shape = (kind, length)
        routes = self._by_shape.get(shape)
        if routes is None:
            routes = self._by_shape[shape] = tuple(
                route
                for route in self._routes
                if kind in route.listeners and len(route.segments) == length
            )
        return routes

    def _check_version(self, request: ApiRequest) -> None:
        version = request.query.get("api-version")
        supported = ", ".join(self.supported_versions)
        if version is None:
            raise BadRequest(
                "missing required query parameter api-version",
                hint=f"add ?api-version=<one of: {supported}>",
            )
        if version not in self.supported_versions:
            raise BadRequest(
                f"unsupported api-version {version!r}", hint=f"use one of: {supported}"
            )


def _encoded(response: ApiResponse) -> ApiResponse:
    """The response with its JSON body encoded here, so a body that cannot be is a 500 too."""
    if response.body is None or isinstance(response.body, bytes):
        return response
    return replace(
        response,
        body=response.encoded_body(),
        headers=(*response.headers, ("Content-Type", JSON_TYPE)),
    )


def _split_path(path: str) -> list[str]:
    """The decoded segments of a percent-encoded path; `%2F` stays inside its segment. One
    trailing slash is not a segment: edgeAgent asks for `/identities/`, as edgelet serves it."""
    if len(path) > 1 and path.endswith("/"):
        path = path[:-1]
    try:
        return [unquote(part, errors="strict") for part in path.split("/")[1:]]
    except UnicodeDecodeError:
        raise BadRequest(
            f"path {path} has percent-escapes that are not UTF-8", hint="encode names as UTF-8"
        ) from None


def _parse_pattern(pattern: str) -> tuple[_Segment, ...]:
    if not pattern.startswith("/"):
        raise ValueError(f"route pattern {pattern!r} must start with '/'")
    segments = []
    names: set[str] = set()
    for part in pattern.split("/")[1:]:
        if part.startswith("{") and part.endswith("}"):
            name = part[1:-1]
            if not name.isidentifier() or name in names:
                raise ValueError(f"route pattern {pattern!r}: bad parameter {part!r}")
            names.add(name)
            segments.append(_Segment(name, True))
        elif "{" in part or "}" in part:
            raise ValueError(f"route pattern {pattern!r}: a parameter must be a whole segment")
        else:
            segments.append(_Segment(part, False))
    return tuple(segments)
