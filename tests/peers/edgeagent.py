"""edgeAgent as the management API sees it: its requests byte for byte, its answer parsing, its
success rules and the DTO checks of its generated client, for replay tests against the daemon.

Written from Azure/iotedge (edge-agent 1.5) without its code: every rule names the file it comes
from, with these abbreviations:
- `EA/`  edge-agent/src/Microsoft.Azure.Devices.Edge.Agent.Edgelet/
- `GEN`  EA/version_<v>/generatedCode/EdgeletHttpClient.cs (NSwag client, one per api-version)
- `MM`   EA/version_<v>/ModuleManagementHttpClient.cs
- `VER`  EA/versioning/ModuleManagementHttpClientVersioned.cs
- `UDS/` edge-util/src/Microsoft.Azure.Devices.Edge.Util/uds/
- `DOCKER/` edge-agent/src/Microsoft.Azure.Devices.Edge.Agent.Docker/
- `LOGS/` edge-agent/src/Microsoft.Azure.Devices.Edge.Agent.Core/logs/

`EdgeAgent(socket, version).call(op, ...)` makes one exchange as edgeAgent does (a new connection,
`Connection: close`, its headers and body), parses the answer as `HttpRequestResponseSerializer`
does, and applies the generated client's status handling and `MM.HandleException`: it returns the
typed body edgeAgent would get, or raises AssertionError saying why edgeAgent would fail. The
`check_*` functions are the deserialiser's rules for each response type (Newtonsoft:
Required.Always = present and not null; unknown members ignored; primitive coercions allowed).
The contract these come from is written up in /work/notes/edgeagent_contract.md.
"""

from __future__ import annotations

import datetime
import json
import math
import re
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

# ApiVersion.cs (edge-util .../edged/ApiVersion.cs): the versions edgeAgent's client knows, oldest
# first; the one used is min(IOTEDGE_APIVERSION, "2022-08-03") (EA/ModuleManagementHttpClient.cs).
VERSIONS: tuple[str, ...] = (
    "2018-06-28",
    "2019-01-30",
    "2019-10-22",
    "2019-11-05",
    "2020-07-07",
    "2021-12-07",
    "2022-08-03",
)
OLDEST, NEWEST = VERSIONS[0], VERSIONS[-1]

# HttpClientHelper.GetBaseUrl: unix:///…/mgmt.sock -> http://mgmt.sock, so Host is "mgmt.sock:80"
# (UDS/HttpRequestResponseSerializer.cs PreProcessRequest: "{DnsSafeHost}:{Port}").
HOST = "mgmt.sock:80"
MANAGED_BY = "IotEdge"  # edge-agent Core Constants.ModuleIdentityEdgeManagedByValue


def at_least(version: str, first: str) -> bool:
    return VERSIONS.index(version) >= VERSIONS.index(first)


# GEN style per version: how an unexpected status with an empty body ends (see _refusal).
def _style(version: str) -> str:
    if at_least(version, "2021-12-07"):
        return "null-is-swallowed"  # GEN(2021-12-07+): "Response was null" plain SwaggerException
    return (
        "null-is-error"  # GEN(<=2020-07-07): null result thrown as SwaggerException<ErrorResponse>
    )


@dataclass(frozen=True)
class Operation:
    """One call of edgeAgent's management client."""

    method: str
    path: str  # with {name}
    accept: str | None  # the Accept header the generated method adds, if any
    body: str  # "json" (StringContent, application/json), "empty" (charset=utf-8), "none"
    success: Callable[[str], frozenset[int]]  # the status codes GEN treats as success, per version
    result: str | None  # the response DTO ("ModuleList", ...) or None for void calls
    first: str = OLDEST  # the first api-version whose MM makes this request
    source: str = ""


def _codes(
    old: Iterable[int], new: Iterable[int], switch: str = "2019-11-05"
) -> Callable[[str], frozenset[int]]:
    return lambda version: frozenset(new if at_least(version, switch) else old)


def _always(*codes: int) -> Callable[[str], frozenset[int]]:
    return lambda version: frozenset(codes)


OPERATIONS: dict[str, Operation] = {
    # GEN ListModulesAsync: GET /modules, 200 -> ModuleList.
    "list_modules": Operation(
        "GET",
        "/modules",
        "application/json",
        "none",
        _always(200),
        "ModuleList",
        source="GEN ListModulesAsync",
    ),
    # GEN CreateModuleAsync: 2018-06-28 expects 200, later 201; 409 = exists.
    "create_module": Operation(
        "POST",
        "/modules",
        "application/json",
        "json",
        _codes([200], [201], switch="2019-01-30"),
        None,
        source="GEN CreateModuleAsync",
    ),
    # GEN UpdateModuleAsync: PUT /modules/{name}[?start=true], 200.
    "update_module": Operation(
        "PUT",
        "/modules/{name}",
        "application/json",
        "json",
        _always(200),
        None,
        source="GEN UpdateModuleAsync",
    ),
    "delete_module": Operation(
        "DELETE",
        "/modules/{name}",
        None,
        "none",
        _codes([200, 204], [204]),
        None,
        source="GEN DeleteModuleAsync",
    ),
    # MM(2018-06-28).PrepareUpdateAsync returns Task.CompletedTask: no request before 2019-01-30.
    "prepare_update": Operation(
        "POST",
        "/modules/{name}/prepareupdate",
        None,
        "json",
        _codes([200, 204], [204]),
        None,
        first="2019-01-30",
        source="GEN PrepareUpdateModuleAsync",
    ),
    "start_module": Operation(
        "POST",
        "/modules/{name}/start",
        None,
        "empty",
        _codes([200, 204], [204]),
        None,
        source="GEN StartModuleAsync",
    ),
    "stop_module": Operation(
        "POST",
        "/modules/{name}/stop",
        None,
        "empty",
        _codes([200, 204], [204]),
        None,
        source="GEN StopModuleAsync",
    ),
    "restart_module": Operation(
        "POST",
        "/modules/{name}/restart",
        None,
        "empty",
        _codes([200, 204], [204]),
        None,
        source="GEN RestartModuleAsync",
    ),
    # GEN: the collection path is "/identities/?" (trailing slash) in every version.
    "list_identities": Operation(
        "GET",
        "/identities/",
        "application/json",
        "none",
        _codes([200, 204], [200]),
        "IdentityList",
        source="GEN ListIdentitiesAsync",
    ),
    "create_identity": Operation(
        "POST",
        "/identities/",
        "application/json",
        "json",
        _always(200),
        "Identity",
        source="GEN CreateIdentityAsync",
    ),
    "update_identity": Operation(
        "PUT",
        "/identities/{name}",
        "application/json",
        "json",
        _always(200),
        "Identity",
        source="GEN UpdateIdentityAsync",
    ),
    "delete_identity": Operation(
        "DELETE",
        "/identities/{name}",
        None,
        "none",
        _codes([200, 204], [204]),
        None,
        source="GEN DeleteIdentityAsync",
    ),
    "system_info": Operation(
        "GET",
        "/systeminfo",
        "application/json",
        "none",
        _always(200),
        "SystemInfo",
        source="GEN GetSystemInfoAsync",
    ),
    # MM(<2019-11-05).GetSystemResourcesAsync returns null without a request.
    "system_resources": Operation(
        "GET",
        "/systeminfo/resources",
        "application/json",
        "none",
        _always(200),
        "SystemResources",
        first="2019-11-05",
        source="GEN GetSystemResourcesAsync",
    ),
    # GEN GetSupportBundleAsync ("manually modified"): the status is never looked at, the body is
    # uploaded as the bundle (edge-agent Core requests/SupportBundleRequestHandler.cs); no
    # request before 2020-07-07 (MM returns Stream.Null).
    "support_bundle": Operation(
        "GET",
        "/systeminfo/supportbundle",
        "application/zip",
        "none",
        lambda version: frozenset(range(100, 600)),
        None,
        first="2020-07-07",
        source="GEN GetSupportBundleAsync",
    ),
    # MM(<2019-10-22).ReprovisionDeviceAsync is a no-op.
    "reprovision": Operation(
        "POST",
        "/device/reprovision",
        None,
        "empty",
        _always(200),
        None,
        first="2019-10-22",
        source="GEN ReprovisionDeviceAsync",
    ),
}


# ---------------------------------------------------------------------------------------------
# the wire (UDS/HttpRequestResponseSerializer.cs, UDS/HttpBufferedStream.cs,
# UDS/HttpChunkedStreamReader.cs, UDS/HttpUdsMessageHandler.cs)

# System.Net.HttpStatusCode's defined values: SetResponseStatusLine refuses any other code.
DOTNET_STATUS_CODES = frozenset(
    [
        100,
        101,
        102,
        103,
        *range(200, 209),
        226,
        *range(300, 309),
        *range(400, 419),
        421,
        422,
        423,
        424,
        426,
        428,
        429,
        431,
        451,
        *range(500, 509),
        510,
        511,
    ]
)
# Headers HttpResponseMessage.Headers refuses (content headers) go to a Dictionary with Add, so
# a duplicate throws ArgumentException (HttpRequestResponseSerializer.SetHeadersAndContent).
CONTENT_HEADERS = frozenset(
    [
        "allow",
        "content-disposition",
        "content-encoding",
        "content-language",
        "content-length",
        "content-location",
        "content-md5",
        "content-range",
        "content-type",
        "expires",
        "last-modified",
    ]
)


@dataclass(frozen=True)
class Answer:
    """An answer as edgeAgent's serializer reads it."""

    status: int
    reason: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    raw: bytes = field(repr=False)

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


def request_bytes(
    method: str, target: str, operation_body: str, body: bytes, accept: str | None
) -> bytes:
    """The bytes edgeAgent writes: request line, `request.Headers` (Accept if the generated method
    set it, Host, Connection: close), then the content headers, CRLF, then the content."""
    lines = [f"{method} {target} HTTP/1.1"]
    if accept is not None:
        lines.append(f"Accept: {accept}")
    lines += [f"Host: {HOST}", "Connection: close"]
    if operation_body == "json":
        # GEN: StringContent(json) then ContentType = "application/json" (no charset).
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    elif operation_body == "empty":
        # GEN: StringContent(string.Empty, Encoding.UTF8, "application/json").
        lines += ["Content-Type: application/json; charset=utf-8", "Content-Length: 0"]
        body = b""
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + body


def exchange(path: Path, data: bytes, timeout_s: float = 60.0) -> bytes:
    """One connection per request (HttpUdsMessageHandler.SendAsync), read to the end of the stream.
    A Content-Length answer is only complete at EOF for edgeAgent (LoadIntoBufferAsync reads to
    the end), so a server that keeps the connection open hangs it: that is an AssertionError here
    unless the answer is a complete chunked one (HttpChunkedStreamReader stops at the last
    chunk)."""
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout_s)
        conn.connect(str(path))
        conn.sendall(data)
        while True:
            conn.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                chunk = conn.recv(65536)
            except TimeoutError:
                raw = b"".join(chunks)
                if _complete_chunked(raw):
                    return raw
                raise AssertionError(
                    f"the server kept the connection open {timeout_s:g} s after {len(raw)} bytes; "
                    "edgeAgent sent "
                    "Connection: close and reads a Content-Length or unframed body to EOF "
                    "(UDS/HttpRequestResponseSerializer.cs LoadIntoBufferAsync)"
                ) from None
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


def _complete_chunked(raw: bytes) -> bool:
    head, sep, rest = raw.partition(b"\r\n\r\n")
    if not sep or b"transfer-encoding: chunked" not in head.lower():
        return False
    try:
        _dechunk(rest)
    except AssertionError:
        return False
    return True


def _read_line(data: bytes, at: int, what: str) -> tuple[str, int]:
    """HttpBufferedStream.ReadLineAsync: a line ends at CR LF; EOF first is an IOException."""
    end = data.find(b"\r\n", at)
    if end < 0:
        raise AssertionError(
            f"{what}: no CRLF before the end of the stream (UDS/HttpBufferedStream.cs "
            f"'Unexpected end of stream'); got {data[at : at + 200]!r}"
        )
    return data[at:end].decode("latin-1"), end + 2


def _dechunk(data: bytes, *, partial: bool = False) -> bytes:
    """UDS/HttpChunkedStreamReader.cs: size line = bare hex (int.TryParse HexNumber: no chunk
    extensions), data, CRLF; a 0 chunk ends it. `partial`: the complete chunks of a stream still
    arriving (follow=true logs)."""
    out, at = bytearray(), 0
    while True:
        if partial and data.find(b"\r\n", at) < 0:
            return bytes(out)
        line, at = _read_line(data, at, "chunk size line")
        if not re.fullmatch(r"[0-9A-Fa-f]+", line):
            raise AssertionError(
                f"chunk size line {line!r} is not bare hex (UDS/HttpChunkedStreamReader.cs "
                "int.TryParse(line, NumberStyles.HexNumber))"
            )
        size = int(line, 16)
        if size == 0:
            return bytes(out)
        if partial and len(data) < at + size + 2:
            return bytes(out)
        if len(data) < at + size + 2:
            raise AssertionError(
                "chunk shorter than its size line (UDS/HttpChunkedStreamReader.cs)"
            )
        out += data[at : at + size]
        _, at = _read_line(data, at + size, "chunk end")


def parse_answer(raw: bytes, *, partial: bool = False) -> Answer:
    """The answer as UDS/HttpRequestResponseSerializer.cs DeserializeResponse reads it
    (`partial`: a chunked body still arriving, its complete chunks)."""
    if not raw:
        raise AssertionError(
            "empty answer: edgeAgent throws 'Response is empty.' "
            "(UDS/HttpRequestResponseSerializer.cs)"
        )
    status_line, at = _read_line(raw, 0, "status line")
    parts = status_line.split(" ", 2)
    if len(parts) < 3:
        raise AssertionError(
            f"status line {status_line!r} has no reason phrase: edgeAgent needs 3 space-separated "
            "parts ('Status line is not valid.', UDS/HttpRequestResponseSerializer.cs)"
        )
    version = parts[0].split("/", 1)
    if len(version) < 2 or not re.fullmatch(r"\d+\.\d+", version[1]):
        raise AssertionError(
            f"status line version {parts[0]!r} does not parse "
            "(UDS/HttpRequestResponseSerializer.cs)"
        )
    if not parts[1].isdigit() or int(parts[1]) not in DOTNET_STATUS_CODES:
        raise AssertionError(
            f"status code {parts[1]!r} is not a System.Net.HttpStatusCode value "
            "(UDS/HttpRequestResponseSerializer.cs Enum.IsDefined)"
        )
    headers: list[tuple[str, str]] = []
    content_seen: set[str] = set()
    while True:
        line, at = _read_line(raw, at, "header line")
        if not line.strip():
            break
        colon = line.find(":")
        if colon <= 0:
            raise AssertionError(
                f"header line {line!r} has no name "
                "(UDS/HttpRequestResponseSerializer.cs 'Header is invalid')"
            )
        name, value = line[:colon].strip(), line[colon + 1 :].strip()
        if name.lower() in CONTENT_HEADERS:
            if name.lower() in content_seen:
                raise AssertionError(
                    f"content header {name} repeated: edgeAgent's Dictionary.Add throws "
                    "(UDS/HttpRequestResponseSerializer.cs SetHeadersAndContent)"
                )
            content_seen.add(name.lower())
        headers.append((name, value))
    rest = raw[at:]
    answer = Answer(int(parts[1]), parts[2], tuple(headers), rest, raw)
    chunked = (answer.header("transfer-encoding") or "").lower() == "chunked"
    if chunked:
        body = _dechunk(rest, partial=partial)
    else:
        body = rest
        length = answer.header("content-length")
        if length is not None:
            if not length.isdigit():
                raise AssertionError(
                    f"Content-Length {length!r} is not a number "
                    "(UDS/HttpRequestResponseSerializer.cs)"
                )
            if len(body) > int(length):
                raise AssertionError(
                    f"{len(body)} body bytes after Content-Length {length}: LoadIntoBufferAsync "
                    "refuses more than the declared size (UDS/HttpRequestResponseSerializer.cs)"
                )
    return Answer(answer.status, answer.reason, answer.headers, body, raw)


# ---------------------------------------------------------------------------------------------
# status handling (GEN per method + MM.HandleException)


def _json_or_none(body: bytes) -> tuple[bool, Any]:
    """(parsed, value): Newtonsoft reads an empty body as null and throws on bad JSON."""
    text = body.decode("utf-8", errors="replace")
    if not text.strip():
        return True, None
    try:
        return True, json.loads(text)
    except ValueError:
        return False, None


def _refusal(op: Operation, version: str, answer: Answer) -> str | None:
    """Why edgeAgent fails on a status that is not the operation's success code, or None when it
    swallows it (MM.HandleException: a plain SwaggerException below 400 is ignored)."""
    status = answer.status
    if status == 304 and op.path.endswith(("/start", "/stop", "/restart")):
        return None  # GEN: 304 -> SwaggerException("Not Modified") -> swallowed
    parsed, value = _json_or_none(answer.body)
    is_error_response = parsed and isinstance(value, dict) and value.get("message") is not None
    if is_error_response:
        return (
            f"{status} with ErrorResponse {value!r} -> EdgeletCommunicationException "
            "(MM.HandleException)"
        )
    if parsed and value is None:
        if _style(version) == "null-is-error":
            return (
                f"{status} with an empty body: GEN({version}) throws "
                "SwaggerException<ErrorResponse> with a null result -> "
                "EdgeletCommunicationException"
            )
        return None if status < 400 else f"{status} -> EdgeletCommunicationException"
    # not an ErrorResponse (bad JSON or no "message"): plain SwaggerException
    return (
        None
        if status < 400
        else f"{status} ({answer.text()[:200]!r}) -> EdgeletCommunicationException"
    )


# ---------------------------------------------------------------------------------------------
# DTO rules (GEN DTO classes; Newtonsoft's readers for each CLR type)


def _fail(where: str, problem: str, source: str) -> AssertionError:
    return AssertionError(f"{where}: {problem} [{source}]")


def _string(value: Any, where: str, source: str) -> str:
    # JsonReader.ReadAsString: strings, and numbers/booleans converted; objects/arrays throw.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise _fail(where, f"must be a JSON string, got {value!r}", source)


def _integer(value: Any, where: str, source: str, bits: int) -> int:
    # Int32/Int64 properties: integers, numeric strings, floats (Convert.ChangeType); range-checked.
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise _fail(where, f"must be an integer, got {value!r}", source)
    try:
        number = int(value) if not isinstance(value, float) else round(value)
    except ValueError:
        raise _fail(where, f"must be an integer, got {value!r}", source) from None
    if not -(2 ** (bits - 1)) <= number < 2 ** (bits - 1):
        raise _fail(where, f"{value!r} overflows Int{bits}", source)
    return number


def _double(value: Any, where: str, source: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise _fail(where, f"must be a number, got {value!r}", source)
    try:
        number = float(value)
    except ValueError:
        raise _fail(where, f"must be a number, got {value!r}", source) from None
    if isinstance(value, str) and not math.isfinite(number):
        raise _fail(where, f"must be a finite number, got {value!r}", source)
    return number


def _boolean(value: Any, where: str, source: str) -> bool:
    # JsonReader.ReadAsBoolean: true/false, integers, and the strings "true"/"false".
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value != 0
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise _fail(where, f"must be a boolean, got {value!r}", source)


_ISO = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})T(?P<time>\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)(?P<zone>Z|[+-]\d{2}:?\d{2})?"
)


def parse_time(value: Any, where: str, source: str) -> datetime.datetime:
    """A date as edgeAgent reads it (Newtonsoft ISO 8601 parse, falling back to .NET's parser):
    `YYYY-MM-DDTHH:MM[:SS[.f…]]` and a zone. The zone is required here although .NET would read a
    zoneless time as local time: edgelet always writes UTC with 'Z' ("IoT Hub requires UTC
    timestamps to end with 'Z'", edgelet/edgelet-http/src/modules.rs), and edgeAgent takes
    `.DateTime` of it (MM GetModuleRuntimeInfo)."""
    if not isinstance(value, str):
        raise _fail(where, f"must be a date string, got {value!r}", source)
    match = _ISO.fullmatch(value)
    if match is None:
        raise _fail(where, f"{value!r} is not an ISO 8601 date-time", source)
    if match["zone"] is None:
        raise _fail(where, f"{value!r} has no zone; a zoneless time is read as local time", source)
    clock = match["time"]
    if "." in clock:
        clock, fraction = clock.split(".")
        clock += "." + (fraction + "000000")[:6]
    zone = match["zone"].replace("Z", "+00:00")
    if len(zone) == 5:
        zone = zone[:3] + ":" + zone[3:]
    try:
        return datetime.datetime.fromisoformat(f"{match['date']}T{clock}{zone}")
    except ValueError:
        raise _fail(where, f"{value!r} is not a valid date", source) from None


def _object(value: Any, where: str, source: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(where, f"must be a JSON object, got {value!r}", source)
    return value


def _array(value: Any, where: str, source: str) -> list[Any]:
    if not isinstance(value, list):
        raise _fail(where, f"must be a JSON array, got {value!r}", source)
    return value


@dataclass(frozen=True)
class Rule:
    """One property of a GEN DTO: its JSON name, CLR kind, Required.Always or not, first version."""

    name: str
    kind: str
    required: bool
    source: str
    first: str = OLDEST


_KINDS: dict[str, Callable[[Any, str, str], Any]] = {
    "string": _string,
    "int32": lambda v, w, s: _integer(v, w, s, 32),
    "int64": lambda v, w, s: _integer(v, w, s, 64),
    "double": _double,
    "bool": _boolean,
    "date": parse_time,
    "object": _object,
    "array": _array,
    "any": lambda v, w, s: v,
}

DTOS: dict[str, tuple[Rule, ...]] = {
    "ModuleList": (Rule("modules", "array", True, "GEN ModuleList.Modules Required.Always"),),
    "ModuleDetails": (
        Rule("id", "string", True, "GEN ModuleDetails.Id Required.Always"),
        Rule("name", "string", True, "GEN ModuleDetails.Name Required.Always"),
        Rule("type", "string", True, "GEN ModuleDetails.Type Required.Always"),
        Rule("config", "object", True, "GEN ModuleDetails.Config Required.Always"),
        Rule("status", "object", True, "GEN ModuleDetails.Status Required.Always"),
    ),
    "Config": (
        # MM GetModuleRuntimeInfo: settings must be a JObject ("Expected type JObject").
        Rule(
            "settings",
            "object",
            True,
            "GEN Config.Settings Required.Always; MM GetModuleRuntimeInfo JObject",
        ),
        Rule("env", "array", False, "GEN Config.Env"),
    ),
    "EnvVar": (
        Rule("key", "string", True, "GEN EnvVar.Key Required.Always"),
        Rule("value", "string", True, "GEN EnvVar.Value Required.Always"),
    ),
    "Status": (
        Rule(
            "startTime",
            "date",
            False,
            "GEN Status.StartTime DateTimeOffset? (DateTime? before 2019-11-05)",
        ),
        Rule("exitStatus", "object", False, "GEN Status.ExitStatus"),
        Rule("runtimeStatus", "object", True, "GEN Status.RuntimeStatus Required.Always"),
    ),
    "ExitStatus": (
        Rule("exitTime", "date", True, "GEN ExitStatus.ExitTime Required.Always DateTimeOffset"),
        Rule("statusCode", "string", True, "GEN ExitStatus.StatusCode Required.Always string"),
    ),
    "RuntimeStatus": (
        Rule("status", "string", True, "GEN RuntimeStatus.Status Required.Always"),
        Rule("description", "string", False, "GEN RuntimeStatus.Description"),
    ),
    "IdentityList": (
        Rule("identities", "array", True, "GEN IdentityList.Identities Required.Always"),
    ),
    "Identity": (
        Rule("moduleId", "string", True, "GEN Identity.ModuleId Required.Always"),
        Rule("managedBy", "string", True, "GEN Identity.ManagedBy Required.Always"),
        Rule("generationId", "string", True, "GEN Identity.GenerationId Required.Always"),
        Rule(
            "authType", "string", True, "GEN Identity.AuthType Required.Always StringEnumConverter"
        ),
    ),
    "SystemInfo": (
        Rule("osType", "string", True, "GEN SystemInfo.OsType Required.Always"),
        Rule("architecture", "string", True, "GEN SystemInfo.Architecture Required.Always"),
        Rule("version", "string", False, "GEN SystemInfo.Version"),
        Rule("provisioning", "object", False, "GEN SystemInfo.Provisioning", first="2020-07-07"),
        Rule(
            "server_version", "string", False, "GEN SystemInfo.Server_version", first="2020-07-07"
        ),
        Rule(
            "kernel_version", "string", False, "GEN SystemInfo.Kernel_version", first="2020-07-07"
        ),
        Rule(
            "operating_system",
            "string",
            False,
            "GEN SystemInfo.Operating_system",
            first="2020-07-07",
        ),
        Rule("cpus", "int32", False, "GEN SystemInfo.Cpus int?", first="2020-07-07"),
        Rule(
            "total_memory", "int64", False, "GEN SystemInfo.Total_memory long?", first="2022-08-03"
        ),
        Rule("virtualized", "string", False, "GEN SystemInfo.Virtualized", first="2020-07-07"),
    ),
    "ProvisioningInfo": (
        Rule("type", "string", True, "GEN ProvisioningInfo.Type Required.Always"),
        Rule(
            "dynamicReprovisioning",
            "bool",
            True,
            "GEN ProvisioningInfo.DynamicReprovisioning Required.Always",
        ),
        Rule(
            "alwaysReprovisionOnStartup",
            "bool",
            False,
            "GEN ProvisioningInfo.AlwaysReprovisionOnStartup bool?",
        ),
    ),
    "SystemResources": (
        Rule("host_uptime", "int64", True, "GEN SystemResources.Host_uptime Required.Always long"),
        Rule(
            "process_uptime",
            "int64",
            True,
            "GEN SystemResources.Process_uptime Required.Always long",
        ),
        Rule("used_cpu", "double", True, "GEN SystemResources.Used_cpu Required.Always double"),
        Rule("used_ram", "int64", True, "GEN SystemResources.Used_ram Required.Always long"),
        Rule("total_ram", "int64", True, "GEN SystemResources.Total_ram Required.Always long"),
        Rule("disks", "array", True, "GEN SystemResources.Disks Required.Always"),
        Rule(
            "docker_stats",
            "string",
            True,
            "GEN SystemResources.Docker_stats Required.Always string",
        ),
    ),
    "Disk": (
        Rule("name", "string", True, "GEN Disk.Name Required.Always"),
        Rule("available_space", "int64", True, "GEN Disk.Available_space Required.Always long"),
        Rule("total_space", "int64", True, "GEN Disk.Total_space Required.Always long"),
        Rule("file_system", "string", True, "GEN Disk.File_system Required.Always"),
        Rule("file_type", "string", True, "GEN Disk.File_type Required.Always"),
    ),
    "ErrorResponse": (
        Rule("message", "string", True, "GEN ErrorResponse.Message Required.Always"),
    ),
}

# Newtonsoft StringEnumConverter reads EnumMember values case-insensitively (edgelet sends "sas").
AUTH_TYPES = ("None", "Sas", "X509")  # GEN IdentityAuthType
# EA MM GetModuleRuntimeInfo: Enum.TryParse(status, ignoreCase) into Core ModuleStatus
# (edge-agent Core/IModule.cs); any other string becomes Unknown.
MODULE_STATUSES = ("unknown", "backoff", "running", "unhealthy", "stopped", "failed", "dead")


def check_fields(doc: Any, dto: str, where: str, version: str = NEWEST) -> dict[str, Any]:
    """`doc` against `dto`'s rules at `version`: each Required.Always property present and not
    null, each present property of a kind the deserialiser reads."""
    body = _object(doc, where, f"GEN {dto}")
    for rule in DTOS[dto]:
        if not at_least(version, rule.first):
            continue
        at = f"{where}.{rule.name}"
        value = body.get(rule.name)
        if value is None:
            if rule.required:
                missing = "missing" if rule.name not in body else "null"
                raise _fail(at, f"{missing}, but Required.Always", rule.source)
            continue
        _KINDS[rule.kind](value, at, rule.source)
    return body


def check_module_list(doc: Any, version: str = NEWEST) -> list[dict[str, Any]]:
    body = check_fields(doc, "ModuleList", "ModuleList", version)
    return [
        check_module_details(m, version, f"ModuleList.modules[{i}]")
        for i, m in enumerate(body["modules"])
    ]


def check_module_details(
    doc: Any, version: str = NEWEST, where: str = "ModuleDetails"
) -> dict[str, Any]:
    body = check_fields(doc, "ModuleDetails", where, version)
    check_config(body["config"], version, f"{where}.config")
    check_status(body["status"], version, f"{where}.status")
    return body


def check_config(doc: Any, version: str = NEWEST, where: str = "Config") -> dict[str, Any]:
    body = check_fields(doc, "Config", where, version)
    for index, item in enumerate(body.get("env") or []):
        check_fields(item, "EnvVar", f"{where}.env[{index}]", version)
    check_reported_settings(body["settings"], f"{where}.settings")
    return body


def check_reported_settings(settings: Any, where: str = "settings") -> dict[str, Any]:
    """What edgeAgent reads from settings (DOCKER/DockerReportedConfig.cs ReadJson, DockerConfig):
    `image` non-blank; `createOptions` (+ `createOptions01`, … chunks) joined from each token's
    ToString() must be empty, "null" or JSON for CreateContainerParameters (an object)."""
    body = _object(settings, where, "MM GetModuleRuntimeInfo: settings must be a JObject")
    image = body.get("image")
    if not isinstance(image, str) or not image.strip():
        raise _fail(
            f"{where}.image",
            f"must be a non-blank string, got {image!r}",
            "DOCKER/DockerConfig.cs ValidateAndGetImage CheckNonWhiteSpace",
        )
    options = reported_create_options(body)
    if options.strip() and options.strip().lower() != "null":
        try:
            parsed = json.loads(options)
        except ValueError:
            raise _fail(
                f"{where}.createOptions",
                f"{options[:200]!r} is not JSON",
                "DOCKER/DockerConfig.cs GetCreateOptions "
                "DeserializeObject<CreateContainerParameters>",
            ) from None
        _object(parsed, f"{where}.createOptions", "DOCKER/models/CreateContainerParameters.cs")
    return body


def reported_create_options(settings: Mapping[str, Any]) -> str:
    """The createOptions text edgeAgent reconstructs: `createOptions`, `createOptions01`, … each
    token's ToString() (a string as is, an object as its JSON), joined
    (DOCKER/DockerReportedConfig.cs)."""
    texts: list[str] = []
    for index in range(100):
        key = "createOptions" if index == 0 else f"createOptions{index:02d}"
        if key not in settings:
            break
        token = settings[key]
        texts.append(
            "" if token is None else token if isinstance(token, str) else json.dumps(token)
        )
    return "".join(texts)


def check_status(doc: Any, version: str = NEWEST, where: str = "Status") -> dict[str, Any]:
    body = check_fields(doc, "Status", where, version)
    if body.get("exitStatus") is not None:
        check_exit_status(body["exitStatus"], version, f"{where}.exitStatus")
    check_fields(body["runtimeStatus"], "RuntimeStatus", f"{where}.runtimeStatus", version)
    return body


def check_exit_status(doc: Any, version: str = NEWEST, where: str = "ExitStatus") -> dict[str, Any]:
    return check_fields(doc, "ExitStatus", where, version)


def module_status(details: Mapping[str, Any]) -> str:
    """The Core ModuleStatus edgeAgent derives (MM GetModuleRuntimeInfo, Enum.TryParse)."""
    text = details["status"]["runtimeStatus"]["status"]
    return text.lower() if isinstance(text, str) and text.lower() in MODULE_STATUSES else "unknown"


def exit_code(details: Mapping[str, Any]) -> int:
    """MM GetModuleRuntimeInfo: long.TryParse(exitStatus.statusCode), 0 when absent/unparsable."""
    exit_status = details["status"].get("exitStatus")
    code = exit_status.get("statusCode") if exit_status else None
    text = str(code).strip() if code is not None else ""
    return int(text) if re.fullmatch(r"[+-]?\d+", text) else 0


def check_identity_list(doc: Any, version: str = NEWEST) -> list[dict[str, Any]]:
    body = check_fields(doc, "IdentityList", "IdentityList", version)
    return [
        check_identity(item, version, f"IdentityList.identities[{i}]")
        for i, item in enumerate(body["identities"])
    ]


def check_identity(doc: Any, version: str = NEWEST, where: str = "Identity") -> dict[str, Any]:
    body = check_fields(doc, "Identity", where, version)
    if str(body["authType"]).lower() not in [a.lower() for a in AUTH_TYPES]:
        raise _fail(
            f"{where}.authType",
            f"{body['authType']!r} is not one of {AUTH_TYPES}",
            "GEN IdentityAuthType EnumMember values",
        )
    for name in ("moduleId", "generationId"):
        if not str(body[name]).strip():
            raise _fail(f"{where}.{name}", "is blank", "EA/models/Identity.cs CheckNonWhiteSpace")
    return body


def check_system_info(doc: Any, version: str = NEWEST) -> dict[str, Any]:
    body = check_fields(doc, "SystemInfo", "SystemInfo", version)
    if at_least(version, "2020-07-07") and body.get("provisioning") is not None:
        check_fields(body["provisioning"], "ProvisioningInfo", "SystemInfo.provisioning", version)
    return body


def check_system_resources(doc: Any, version: str = NEWEST) -> dict[str, Any]:
    body = check_fields(doc, "SystemResources", "SystemResources", version)
    for index, disk in enumerate(body["disks"]):
        check_fields(disk, "Disk", f"SystemResources.disks[{index}]", version)
    source = "Edgelet.Docker/SystemResourcesMetrics.cs DeserializeObject<DockerStats[]>"
    try:
        stats = json.loads(body["docker_stats"])
    except (TypeError, ValueError):
        raise _fail(
            "SystemResources.docker_stats", f"{body['docker_stats']!r} is not JSON", source
        ) from None
    for index, entry in enumerate(_array(stats, "SystemResources.docker_stats", source)):
        _object(entry, f"SystemResources.docker_stats[{index}]", "DOCKER/models/DockerStats.cs")
        name = entry.get("name")
        if name is not None and (not isinstance(name, str) or not name):
            # SetModuleStats strips the leading '/' with Substring(1): "" throws.
            raise _fail(
                f"SystemResources.docker_stats[{index}].name",
                f"must be a non-empty string ('/<module>'), got {name!r}",
                "Edgelet.Docker/SystemResourcesMetrics.cs SetModuleStats Substring(1)",
            )
    return body


_CHECKS: dict[str, Callable[[Any, str], Any]] = {
    "ModuleList": check_module_list,
    "IdentityList": check_identity_list,
    "Identity": check_identity,
    "SystemInfo": check_system_info,
    "SystemResources": check_system_resources,
}


# ---------------------------------------------------------------------------------------------
# request bodies as edgeAgent serialises them


def module_spec(
    name: str,
    image: str,
    create_options: Mapping[str, Any],
    version: str = NEWEST,
    *,
    env: Mapping[str, str] | None = None,
    pull_policy: str = "Never",
) -> dict[str, Any]:
    """GEN ModuleSpec as MM MapToModuleSpec fills it: name, type, imagePullPolicy (EnumMember
    "On-Create"/"Never"; absent at 2018-06-28), config {settings: CombinedDockerConfig (image,
    createOptions object, digest null, auth null: DOCKER/CombinedDockerConfig.cs + edge-util
    OptionConverter), env: [{key, value}]}. `env=None` is prepareupdate's empty list."""
    spec: dict[str, Any] = {"name": name, "type": "docker"}
    if at_least(version, "2019-01-30"):
        spec["imagePullPolicy"] = pull_policy
    spec["config"] = {
        "settings": {
            "image": image,
            "createOptions": dict(create_options),
            "digest": None,
            "auth": None,
        },
        "env": [{"key": k, "value": v} for k, v in (env or {}).items()],
    }
    return spec


def module_env(
    name: str, version: str, *, hub: str, device: str, generation_id: str, gateway: str
) -> dict[str, str]:
    """The env edgeAgent adds to a module (EA/commands/CreateOrUpdateCommand.cs GetEnvVars)."""
    return {
        "IOTEDGE_WORKLOADURI": "unix:///var/run/iotedge/workload.sock",
        "IOTEDGE_AUTHSCHEME": "sasToken",
        "IOTEDGE_MODULEGENERATIONID": generation_id,
        "IOTEDGE_IOTHUBHOSTNAME": hub,
        "IOTEDGE_GATEWAYHOSTNAME": gateway,
        "IOTEDGE_DEVICEID": device,
        "IOTEDGE_MODULEID": name,
        "RuntimeLogLevel": "Information",
        "IOTEDGE_APIVERSION": version,
    }


def compact(doc: Any) -> bytes:
    """Newtonsoft's default output: no whitespace, keys in declaration order."""
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def url_name(name: str) -> str:
    """WebUtility.UrlEncode of a path segment (space -> '+', '$' -> '%24')."""
    return quote_plus(name, safe="-_.!*()")


# ---------------------------------------------------------------------------------------------
# the client


@dataclass
class EdgeAgent:
    """edgeAgent's management client at one api-version, on the management socket."""

    socket_path: Path
    version: str = NEWEST
    timeout_s: float = 60.0
    sent: list[bytes] = field(default_factory=list)

    def send(
        self, op_name: str, name: str | None = None, body: Any = None, query: str = ""
    ) -> Answer:
        """One exchange of `op_name`, the answer parsed as edgeAgent's serializer does."""
        op = OPERATIONS[op_name]
        path = op.path.replace("{name}", url_name(name or ""))
        target = f"{path}?api-version={self.version}{query}"
        data = request_bytes(
            op.method, target, op.body, compact(body) if op.body == "json" else b"", op.accept
        )
        self.sent.append(data)
        return parse_answer(exchange(self.socket_path, data, self.timeout_s))

    def call(self, op_name: str, name: str | None = None, body: Any = None, query: str = "") -> Any:
        """`send`, then the generated client's status handling: the checked DTO for value calls,
        None for void calls; AssertionError naming the rule when edgeAgent would fail."""
        op = OPERATIONS[op_name]
        if not at_least(self.version, op.first):
            raise AssertionError(
                f"edgeAgent makes no {op_name} request at {self.version} (MM({self.version}))"
            )
        answer = self.send(op_name, name, body, query)
        expected = op.success(self.version)
        if answer.status in expected:
            if op.result is None:
                return None
            parsed, value = _json_or_none(answer.body)
            if not parsed or value is None:
                raise AssertionError(
                    f"{op_name} at {self.version}: {answer.status} body {answer.text()[:300]!r} "
                    "does not deserialise "
                    f"as {op.result}: MM returns null and edgeAgent fails [{op.source}]"
                )
            return _CHECKS[op.result](value, self.version)
        why = _refusal(op, self.version, answer)
        if why is None and op.result is None:
            return None
        raise AssertionError(
            f"{op_name} {op.method} {op.path} at {self.version}: "
            f"answered {answer.status} {answer.reason!r} "
            f"{answer.text()[:300]!r}; edgeAgent expects {sorted(expected)} [{op.source}]"
            + (
                f": {why}"
                if why
                else ": swallowed as success but the result is null -> NullReferenceException"
            )
        )

    # edgeAgent's operations (MM)

    def list_modules(self) -> list[dict[str, Any]]:
        modules: list[dict[str, Any]] = self.call("list_modules")
        return modules

    def prepare_update(self, spec: Mapping[str, Any]) -> None:
        """EA/commands/PrepareUpdateCommand.cs: the spec, env empty; no request at 2018-06-28."""
        if not at_least(self.version, OPERATIONS["prepare_update"].first):
            return
        body = json.loads(json.dumps(spec))
        body["config"]["env"] = []
        self.call("prepare_update", spec["name"], body)

    def create_module(self, spec: Mapping[str, Any]) -> None:
        self.call("create_module", body=spec)

    def update_module(self, spec: Mapping[str, Any], *, start: bool = False) -> None:
        """GEN UpdateModuleAsync: `&start=true` only for UpdateAndStart (bool -> "true")."""
        self.call("update_module", spec["name"], spec, "&start=true" if start else "")

    def start(self, name: str) -> None:
        self.call("start_module", name)

    def stop(self, name: str) -> None:
        self.call("stop_module", name)

    def restart(self, name: str) -> None:
        self.call("restart_module", name)

    def remove(self, name: str) -> None:
        self.call("delete_module", name)

    def deploy(self, spec: Mapping[str, Any]) -> None:
        """A new module: StandardCommandFactory.CreateAsync = [prepareupdate, create], then the
        planner's StartCommand."""
        self.prepare_update(spec)
        self.create_module(spec)
        self.start(spec["name"])

    def update(self, spec: Mapping[str, Any]) -> None:
        """StandardCommandFactory.UpdateAsync = [prepareupdate, [stop, update]], then start."""
        self.prepare_update(spec)
        self.stop(spec["name"])
        self.update_module(spec)
        self.start(spec["name"])

    def identities(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.call("list_identities")
        return found

    def create_identity(self, name: str, managed_by: str = MANAGED_BY) -> dict[str, Any]:
        created: dict[str, Any] = self.call(
            "create_identity", body={"moduleId": name, "managedBy": managed_by}
        )
        return created

    def update_identity(
        self, name: str, generation_id: str, managed_by: str = MANAGED_BY
    ) -> dict[str, Any]:
        body = {"generationId": generation_id, "managedBy": managed_by}
        updated: dict[str, Any] = self.call("update_identity", name, body)
        return updated

    def delete_identity(self, name: str) -> None:
        self.call("delete_identity", name)

    def system_info(self) -> dict[str, Any]:
        info: dict[str, Any] = self.call("system_info")
        return info

    def system_resources(self) -> dict[str, Any]:
        resources: dict[str, Any] = self.call("system_resources")
        return resources

    def support_bundle(
        self,
        *,
        since: str | None = None,
        until: str | None = None,
        iothub_hostname: str | None = None,
        edge_runtime_only: bool | None = None,
    ) -> Answer:
        """GEN GetSupportBundleAsync's query: since, until (GEN writes the value of `since` there),
        host (always null, so absent), iothub_hostname, edge_runtime_only; the raw answer, which
        edgeAgent uploads as the bundle whatever its status."""
        query = ""
        if since is not None:
            query += f"&since={quote_plus(since)}"
        if until is not None:
            query += f"&until={quote_plus(since or '')}"
        if iothub_hostname is not None:
            query += f"&iothub_hostname={quote_plus(iothub_hostname)}"
        if edge_runtime_only is not None:
            query += f"&edge_runtime_only={str(edge_runtime_only).lower()}"
        if not at_least(self.version, OPERATIONS["support_bundle"].first):
            raise AssertionError(f"edgeAgent makes no support bundle request at {self.version}")
        return self.send("support_bundle", query=query)

    def logs(
        self,
        name: str,
        *,
        follow: bool = False,
        tail: int | None = None,
        since: str | None = None,
        until: str | None = None,
        timestamps: bool | None = None,
    ) -> list[LogLine]:
        """VER.GetModuleLogs: its own URL (name not encoded), any 2xx, the body parsed as the Docker
        framed stream (LOGS/LogsProcessor.cs) and each payload as LOGS/LogMessageParser.cs does."""
        target = f"/modules/{name}/logs?api-version={self.version}&follow={str(follow).lower()}"
        if since is not None:
            target += f"&since={quote(since, safe='')}"
        if until is not None:
            target += f"&until={quote(until, safe='')}"
        if timestamps is not None:
            target += f"&timestamps={str(timestamps).lower()}"
        if not (tail is not None and since is not None and until is not None) and tail is not None:
            target += f"&tail={tail}"
        data = request_bytes("GET", target, "none", b"", None)
        self.sent.append(data)
        answer = parse_answer(exchange(self.socket_path, data, self.timeout_s))
        if not 200 <= answer.status < 300:
            kind = "ArgumentException" if answer.status == 400 else "EdgeletCommunicationException"
            raise AssertionError(
                f"logs of {name}: {answer.status} {answer.text()[:300]!r} -> {kind} "
                "(VER GetModuleLogs)"
            )
        return [
            parse_log_payload(stream, payload) for stream, payload in docker_frames(answer.body)
        ]

    def follow_logs(self, name: str, lines: int, *, tail: int = 0) -> list[LogLine]:
        """GetModuleLogs with follow=true (LOGS/LogsProvider.cs GetLogsStream, the portal's live
        logs): the first `lines` frames of the answer while it keeps streaming, then hang up."""
        target = f"/modules/{name}/logs?api-version={self.version}&follow=true&tail={tail}"
        data = request_bytes("GET", target, "none", b"", None)
        self.sent.append(data)
        received = b""
        deadline = time.monotonic() + self.timeout_s
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.connect(str(self.socket_path))
            conn.sendall(data)
            while time.monotonic() < deadline:
                conn.settimeout(max(0.1, deadline - time.monotonic()))
                try:
                    chunk = conn.recv(65536)
                except TimeoutError:
                    break
                received += chunk
                if b"\r\n\r\n" in received:
                    answer = parse_answer(received, partial=True)
                    if not 200 <= answer.status < 300:
                        raise AssertionError(
                            f"follow logs of {name}: {answer.status} {answer.text()[:300]!r} "
                            "(VER GetModuleLogs)"
                        )
                    frames = complete_frames(answer.body)
                    if len(frames) >= lines:
                        return [parse_log_payload(stream, payload) for stream, payload in frames]
                if not chunk:
                    break
        raise AssertionError(
            f"follow logs of {name}: fewer than {lines} frames in {self.timeout_s:g} s: "
            f"{received[:300]!r}"
        )


# ---------------------------------------------------------------------------------------------
# logs (LOGS/LogsProcessor.cs, LOGS/LogMessageParser.cs)


def complete_frames(body: bytes) -> list[tuple[int, bytes]]:
    """The whole Docker frames at the start of a stream still arriving."""
    at = 0
    while len(body) - at >= 8 and len(body) - at - 8 >= int.from_bytes(
        body[at + 4 : at + 8], "big"
    ):
        at += 8 + int.from_bytes(body[at + 4 : at + 8], "big")
    return docker_frames(body[:at])


def docker_frames(body: bytes) -> list[tuple[int, bytes]]:
    """Akka Framing.LengthField(fieldLength 4, offset 4, big-endian) over Docker's multiplexed
    stream: an 8-byte header [stream, 0, 0, 0, length BE32] before each payload; a truncated
    frame fails the stream (LOGS/LogsProcessor.cs FramingFlow)."""
    frames, at = [], 0
    while at < len(body):
        if len(body) - at < 8:
            raise AssertionError(
                f"{len(body) - at} trailing bytes are not a Docker frame header: "
                f"{body[at : at + 40]!r} "
                "(LOGS/LogsProcessor.cs Framing.LengthField)"
            )
        length = int.from_bytes(body[at + 4 : at + 8], "big")
        if len(body) - at - 8 < length:
            raise AssertionError(
                f"Docker frame at byte {at} announces {length} bytes, {len(body) - at - 8} remain; "
                f"is the body framed at all? starts {body[:60]!r} (LOGS/LogsProcessor.cs)"
            )
        frames.append((body[at], body[at + 8 : at + 8 + length]))
        at += 8 + length
    return frames


def log_messages(body: bytes) -> list[tuple[str, bytes]]:
    """(stream, payload) per frame, as edgeAgent reads them: stream byte 2 is "stderr", any other
    "stdout" (LOGS/LogMessageParser.cs GetStream)."""
    return [
        ("stderr" if stream == 2 else "stdout", payload) for stream, payload in docker_frames(body)
    ]


_LOG = re.compile(
    r"^((?P<dockerTimestamp>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{9}Z))?\s*(<(?P<logLevel>\d)>)?\s*"
    r"((?P<timestamp>\d{4}-\d{2}-\d{2}\s\d{2}:\d{2}:\d{2}.\d{3}\s[+-]\d{2}:\d{2})\s)?\s*(?P<logtext>.*)",
)


@dataclass(frozen=True)
class LogLine:
    """ModuleLogMessageData's parsed fields."""

    stream: str  # "stderr" for stream byte 2, else "stdout" (LogMessageParser.GetStream)
    level: int  # <N> prefix, default 6
    timestamp: (
        datetime.datetime | None
    )  # Docker's (9 fraction digits, Z) first, else the <N> line's
    text: str


def parse_log_payload(stream: int, payload: bytes) -> LogLine:
    text = payload.decode("utf-8", errors="replace")
    match = _LOG.match(text)
    assert match is not None  # the pattern matches every string
    stamp: datetime.datetime | None = None
    if match["dockerTimestamp"]:
        stamp = datetime.datetime.fromisoformat(match["dockerTimestamp"][:26] + "+00:00")
    level = int(match["logLevel"]) if match["logLevel"] else 6
    return LogLine("stderr" if stream == 2 else "stdout", level, stamp, match["logtext"] or text)
