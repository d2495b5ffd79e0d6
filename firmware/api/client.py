"""A small client of the local APIs over a unix socket (h11 over asyncio), used by the CLI.

Every request carries `api-version`; an error answer comes back as the `EdgekeeperError` kind for
its status with the daemon's message; a socket that is missing or refuses us is a
`DaemonUnreachable` naming the socket and what to check. One connection per request: the CLI makes
one or two, and a fresh connection cannot be left half-read by a failed one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from urllib.parse import urlencode

import h11

from firmware.api import versions
from firmware.api.errors import DaemonUnreachable, error_for_answer
from firmware.api.model import JSON_TYPE, ApiResponse

DEFAULT_MANAGEMENT_URI = "unix:///run/edgekeeper/mgmt.sock"

_READ_SIZE = 64 * 1024
_MAX_ANSWER_BYTES = 64 * 1024 * 1024


def socket_path(uri: str) -> str:
    """The filesystem path of `unix:///path` (a bare path is taken as is)."""
    return uri[len("unix://") :] if uri.startswith("unix://") else uri


class ApiClient:
    """Requests to one daemon socket."""

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

    async def request(
        self,
        method: str,
        path: str,
        query: Mapping[str, str] | None = None,
        body: object = None,
    ) -> ApiResponse:
        """Send one request and read the whole answer; raises the answer's error for >= 400."""
        exchange = await self._open(method, path, query, body)
        try:
            status, headers = await exchange.head()
            data = bytearray()
            async for chunk in exchange.body():
                data += chunk
                if len(data) > _MAX_ANSWER_BYTES:
                    raise DaemonUnreachable(
                        f"the daemon at {self.path} sent an answer over {_MAX_ANSWER_BYTES} bytes"
                    )
        finally:
            await exchange.close()
        answer = ApiResponse(status=status, body=bytes(data), headers=headers)
        if status >= 400:
            raise error_for_answer(status, _decoded(answer))
        return answer

    async def stream(
        self, method: str, path: str, query: Mapping[str, str] | None = None
    ) -> AsyncIterator[bytes]:
        """The answer's body chunk by chunk as it arrives (for `logs --follow`)."""
        exchange = await self._open(method, path, query, None)
        try:
            status, headers = await exchange.head()
            if status >= 400:
                data = b"".join([chunk async for chunk in exchange.body()])
                raise error_for_answer(status, _decoded(ApiResponse(status, data, headers)))
            async for chunk in exchange.body(timeout_s=None):
                yield chunk
        finally:
            await exchange.close()

    async def _open(
        self, method: str, path: str, query: Mapping[str, str] | None, body: object
    ) -> _Exchange:
        parameters = {"api-version": self.api_version, **(query or {})}
        target = f"{path}?{urlencode(parameters)}"
        headers = [("host", "localhost"), ("user-agent", "edgekeeper-cli")]
        payload = b""
        if body is not None:
            payload = body if isinstance(body, bytes) else json.dumps(body).encode()
            headers.append(("content-type", JSON_TYPE))
        headers.append(("content-length", str(len(payload))))
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_unix_connection(self.path), self.timeout_s
            )
        except (FileNotFoundError, ConnectionRefusedError):
            raise self._unreachable() from None
        except PermissionError:
            raise DaemonUnreachable(
                f"no permission to use the edgekeeper socket {self.path}",
                hint="run as root or as a member of the socket's group (listen.socket_group)",
            ) from None
        except (TimeoutError, OSError):
            raise self._unreachable() from None
        exchange = _Exchange(reader, writer, self.path, self.timeout_s)
        try:
            await exchange.send(method, target, headers, payload)
        except BaseException:
            await exchange.close()
            raise
        return exchange

    def _unreachable(self) -> DaemonUnreachable:
        return DaemonUnreachable(
            f"cannot reach the edgekeeper daemon at {self.path}",
            hint="is `edgekeeper run` running? see `systemctl status edgekeeper`",
        )


class _Exchange:
    """One request and its answer on one connection."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        path: str,
        timeout_s: float,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._path = path
        self._timeout_s = timeout_s
        self._h11 = h11.Connection(h11.CLIENT)

    async def send(
        self, method: str, target: str, headers: list[tuple[str, str]], payload: bytes
    ) -> None:
        data = self._h11.send(h11.Request(method=method, target=target, headers=headers))
        if payload:
            data += self._h11.send(h11.Data(data=payload))
        data += self._h11.send(h11.EndOfMessage())
        self._writer.write(data)
        try:
            await asyncio.wait_for(self._writer.drain(), self._timeout_s)
        except (TimeoutError, ConnectionError):
            raise self._broken("took no request") from None

    async def head(self) -> tuple[int, tuple[tuple[str, str], ...]]:
        while True:
            event = await self._next_event(self._timeout_s)
            if isinstance(event, h11.Response):
                headers = tuple(
                    (k.decode("latin-1"), v.decode("latin-1")) for k, v in event.headers
                )
                return event.status_code, headers
            if not isinstance(event, h11.InformationalResponse):
                raise self._broken("closed the connection before answering")

    async def body(self, timeout_s: float | None = -1.0) -> AsyncIterator[bytes]:
        wait = self._timeout_s if timeout_s is not None and timeout_s < 0 else timeout_s
        while True:
            event = await self._next_event(wait)
            if isinstance(event, h11.Data):
                yield bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                return
            else:
                raise self._broken("ended the answer early")

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(self._writer.wait_closed(), self._timeout_s)

    async def _next_event(self, timeout_s: float | None) -> object:
        while True:
            try:
                event = self._h11.next_event()
            except h11.RemoteProtocolError as error:
                raise self._broken(f"sent a malformed answer ({error})") from None
            if event is not h11.NEED_DATA:
                return event
            try:
                async with asyncio.timeout(timeout_s):
                    data = await self._reader.read(_READ_SIZE)
            except TimeoutError:
                raise DaemonUnreachable(
                    f"the edgekeeper daemon at {self._path} did not answer in {timeout_s:g} s",
                    hint="see `journalctl -u edgekeeper` for what it is doing",
                ) from None
            except ConnectionError:
                data = b""
            self._h11.receive_data(data)

    def _broken(self, what: str) -> DaemonUnreachable:
        return DaemonUnreachable(
            f"the edgekeeper daemon at {self._path} {what}",
            hint="see `journalctl -u edgekeeper` for why",
        )


def _decoded(answer: ApiResponse) -> object:
    try:
        return answer.json()
    except ValueError:
        return None
