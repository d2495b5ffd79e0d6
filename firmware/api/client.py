"""A small client of the local APIs over a unix socket, used by the CLI: `firmware.http`'s client
with the daemon's conventions.

Every request carries `api-version`; an error answer comes back as the `EdgekeeperError` kind for
its status with the daemon's message; a socket that is missing, refuses us or does not answer is a
`DaemonUnreachable` naming the socket and what to check. One connection per request: the CLI makes
one or two, and a fresh connection cannot be left half-read by a failed one.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from urllib.parse import urlencode

from firmware.api import versions
from firmware.api.errors import DaemonUnreachable, error_for_answer
from firmware.api.model import JSON_TYPE, ApiResponse
from firmware.http.client import Answer, Deadlines, HttpClient, UnixEndpoint
from firmware.http.errors import ExchangeFailed, Failure, Phase

DEFAULT_MANAGEMENT_URI = "unix:///run/edgekeeper/mgmt.sock"

_MAX_ANSWER_BYTES = 64 * 1024 * 1024


def socket_path(uri: str) -> str:
    """The filesystem path of `unix:///path` (a bare path is taken as is)."""
    return uri[len("unix://") :] if uri.startswith("unix://") else uri


class ApiClient:
    """Requests to one daemon socket; every wait (connecting, each silence of the daemon) is
    bounded by `timeout_s`, except the body of a stream, which follows for as long as it lasts."""

    def __init__(
        self,
        uri: str = DEFAULT_MANAGEMENT_URI,
        *,
        api_version: str = versions.LATEST,
        timeout_s: float = 30.0,
    ) -> None:
        self.path = socket_path(uri)
        self.api_version = api_version
        self.timeout_s = timeout_s
        self._http = HttpClient(
            UnixEndpoint(self.path),
            deadlines=Deadlines(connect_s=timeout_s, read_s=timeout_s, overall_s=None),
            headers=[("user-agent", "edgekeeper-cli")],
        )

    async def request(
        self,
        method: str,
        path: str,
        query: Mapping[str, str] | None = None,
        body: object = None,
    ) -> ApiResponse:
        """Send one request and read the whole answer; raises the answer's error for >= 400."""
        headers, payload = _payload(body)
        try:
            answer = await self._http.request(
                method,
                self._target(path, query),
                headers=headers,
                body=payload,
                max_bytes=_MAX_ANSWER_BYTES,
            )
        except ExchangeFailed as error:
            raise self._unreachable(error) from None
        if answer.status >= 400:
            raise error_for_answer(answer.status, _decoded(answer))
        return ApiResponse(
            status=answer.status, body=answer.body, headers=tuple(answer.headers.items())
        )

    async def stream(
        self, method: str, path: str, query: Mapping[str, str] | None = None
    ) -> AsyncIterator[bytes]:
        """The answer's body chunk by chunk as it arrives (for `logs --follow`)."""
        try:
            async with self._http.stream(
                method, self._target(path, query), body=b"", follow=True
            ) as answer:
                if answer.status >= 400:
                    failed = Answer(answer.status, answer.headers, await answer.read())
                    raise error_for_answer(failed.status, _decoded(failed))
                async for chunk in answer:
                    yield chunk
        except ExchangeFailed as error:
            raise self._unreachable(error) from None

    def _target(self, path: str, query: Mapping[str, str] | None) -> str:
        return f"{path}?{urlencode({'api-version': self.api_version, **(query or {})})}"

    def _unreachable(self, error: ExchangeFailed) -> DaemonUnreachable:
        """What a failed exchange means for someone at the command line."""
        if error.failure is Failure.DENIED:
            return DaemonUnreachable(
                f"no permission to use the edgekeeper socket {self.path}",
                hint="run as root or as a member of the socket's group (listen.socket_group)",
            )
        if error.phase is Phase.CONNECT:
            return DaemonUnreachable(
                f"cannot reach the edgekeeper daemon at {self.path}",
                hint="is `edgekeeper run` running? see `systemctl status edgekeeper`",
            )
        if error.failure is Failure.TOO_LARGE:
            return DaemonUnreachable(
                f"the daemon at {self.path} sent an answer over {_MAX_ANSWER_BYTES} bytes"
            )
        if error.failure.timed_out:
            return DaemonUnreachable(
                f"the edgekeeper daemon at {self.path} did not answer in {self.timeout_s:g} s",
                hint="see `journalctl -u edgekeeper` for what it is doing",
            )
        if error.phase is Phase.SEND:
            what = "took no request"
        elif error.failure is Failure.MALFORMED:
            what = f"sent a malformed answer ({error.detail})"
        elif error.phase is Phase.HEAD:
            what = "closed the connection before answering"
        else:
            what = f"ended the answer early ({error.detail})"
        return DaemonUnreachable(
            f"the edgekeeper daemon at {self.path} {what}",
            hint="see `journalctl -u edgekeeper` for why",
        )


def _payload(body: object) -> tuple[list[tuple[str, str]], bytes]:
    """Headers and bytes for a request body: bytes as they are, anything else as JSON."""
    if body is None:
        return [], b""
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    return [("content-type", JSON_TYPE)], payload


def _decoded(answer: Answer) -> object:
    try:
        return answer.json()
    except ValueError:
        return None
