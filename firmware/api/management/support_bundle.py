"""`GET /systeminfo/supportbundle`: a zip of what it takes to see why a gateway misbehaves, answered
as aziot-edged answers edgeAgent's UploadSupportBundle (200, application/zip, an attachment named
support_bundle.zip). edgeAgent uploads the body whatever the status, so only a bad query is refused.

Query, as aziot-edged reads it: `since` and `until` bound the module logs (unix seconds, an RFC 3339
time, or a duration back from now, as `/modules/{name}/logs` reads them); `edge_runtime_only=true`
keeps only the logs of the agent and edgeHub; `iothub_hostname` (aziot-edged hands it to
`iotedge check`) is recorded; `host` is ignored. edgeAgent's client writes the value of `since` into
`until`, which would make every window empty: an `until` equal to `since` is read as no `until`.

The parts (names like aziot-edged's where it has one):
- `logs/<module>_log.txt`: each module's output within the window, timestamped, the agent and
  edgeHub first; `logs/edgekeeper.txt`: the daemon's last log lines;
- `systeminfo.json`, `status.json`, `daemon.json`, `modules.json`: what `GET /systeminfo`,
  `/system/status`, `/daemon/status` and `/modules` answer (registry credentials are never in them);
- `identities.json` (module ids and generation ids), `certificates.json` (subject, issuer,
  validity, SANs, status of each managed certificate), `engine.json` (the engine's version),
  `config.json` (the effective configuration, secrets redacted);
- `bundle.json`: edgekeeper's version and build, the board, the request, the bounds, and a note
  for every part that could not be had (a service not running, an engine not answering) or was cut.

Bounds: the engine is asked for at most `module_log_lines` lines of each module; a module's part
keeps its newest `module_log_bytes`, all module logs together at most `total_log_bytes` (16 MiB);
one bundle is made at a time. Compression and redaction run in the executor.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from firmware import __version__
from firmware.api import versions
from firmware.api.management.bundle_archive import BundleArchive, LogTail
from firmware.api.management.journal import LogRing
from firmware.api.management.logs import parse_moment
from firmware.api.model import ApiRequest, ApiResponse
from firmware.api.router import RouteTable
from firmware.build_info import build_description
from firmware.config.report import redacted
from firmware.config.schema import Config
from firmware.errors import BadRequest, EdgekeeperError
from firmware.executor import RunBlocking
from firmware.identity.model import HUB_MODULE
from firmware.runtime.reconciler import Reconciler

if TYPE_CHECKING:
    from cryptography import x509

    from firmware.certs.service import CertificateService

MiB = 1024 * 1024
CONTENT_DISPOSITION = 'attachment; filename="support_bundle.zip"'

#: (part, path) of the management API answers a bundle holds as they are.
ANSWERS = (
    ("systeminfo.json", "/systeminfo"),
    ("status.json", "/system/status"),
    ("daemon.json", "/daemon/status"),
    ("modules.json", "/modules"),
)

Ask = Callable[[ApiRequest], Awaitable[ApiResponse]]


@dataclass(frozen=True)
class BundleSources:
    """Where a bundle's parts come from. `ask` answers a management API request in-process (the
    router's `dispatch`); `config()`, `current()` and `certs()` give the config, the reconciler
    and the certificate service at request time; `ring` holds the daemon's last log lines; `run`
    runs blocking calls in the executor."""

    ask: Ask
    config: Callable[[], Config]
    current: Callable[[], Reconciler]
    certs: Callable[[], CertificateService]
    ring: LogRing
    run: RunBlocking


@dataclass(frozen=True)
class BundleLimits:
    """What one bundle may cost."""

    module_log_lines: int = 10_000
    module_log_bytes: int = 4 * MiB
    total_log_bytes: int = 16 * MiB


@dataclass(frozen=True)
class BundleRequest:
    """What a caller asked for in the query."""

    since: int | None = None
    until: int | None = None
    edge_runtime_only: bool = False
    iothub_hostname: str | None = None

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> BundleRequest:
        """The request in `query`; `BadRequest` naming the parameter that cannot be read."""
        since_text = query.get("since") or None
        until_text = query.get("until") or None
        if until_text == since_text:  # edgeAgent's client sends since's value as until
            until_text = None
        only = query.get("edge_runtime_only", "false").lower()
        if only not in ("true", "false"):
            raise BadRequest(
                f"query parameter 'edge_runtime_only' is {only!r}", hint="use true or false"
            )
        return cls(
            since=None if since_text is None else parse_moment(since_text, "since"),
            until=None if until_text is None else parse_moment(until_text, "until"),
            edge_runtime_only=only == "true",
            iothub_hostname=query.get("iothub_hostname") or None,
        )


def routes(sources: BundleSources, limits: BundleLimits = BundleLimits()) -> RouteTable:
    """The support bundle route, made from `sources` within `limits`."""
    one_at_a_time = asyncio.Lock()

    async def support_bundle(request: ApiRequest) -> ApiResponse:
        wanted = BundleRequest.from_query(request.query)
        async with one_at_a_time:
            made_at = time.time()
            archive = await sources.run(BundleArchive, made_at)
            collector = _Collector(request, wanted, limits, archive, made_at, sources)
            body = await collector.collect()
        return ApiResponse(
            200,
            body,
            headers=(
                ("Content-Type", "application/zip"),
                ("Content-Disposition", CONTENT_DISPOSITION),
            ),
        )

    return [("GET", "/systeminfo/supportbundle", support_bundle)]


class _Collector:
    """One bundle being made: gathers the parts into `archive` and notes what it could not."""

    def __init__(
        self,
        request: ApiRequest,
        wanted: BundleRequest,
        limits: BundleLimits,
        archive: BundleArchive,
        made_at: float,
        sources: BundleSources,
    ) -> None:
        self.sources = sources
        self.request = request
        self.wanted = wanted
        self.limits = limits
        self.archive = archive
        self.notes: list[str] = []
        self.made_at = made_at

    async def collect(self) -> bytes:
        """Every part, then the archive's bytes."""
        run, config = self.sources.run, self.sources.config
        for part, path in ANSWERS:
            await run(self.archive.add_json, part, await self._answer(path))
        await run(self.archive.add_json, "identities.json", await self._identities())
        await run(self.archive.add_json, "certificates.json", await self._certificates())
        await run(self.archive.add_json, "engine.json", await self._engine())
        await run(self.archive.add_json, "config.json", redacted(config()))
        await run(self.archive.add_text, "logs/edgekeeper.txt", _lines(self.sources.ring.lines()))
        await self._module_logs()
        await run(self.archive.add_json, "bundle.json", self._manifest(config()))
        return await run(self.archive.finish)

    async def _answer(self, path: str) -> object:
        """What `GET path` answers; for an error answer, its status and message (noted)."""
        version = self.request.query.get("api-version", versions.LATEST)
        answer = await self.sources.ask(
            ApiRequest(
                "GET",
                path,
                query={"api-version": version},
                peer=self.request.peer,
                listener=self.request.listener,
            )
        )
        document = answer.json()
        if answer.status == 200:
            return document
        message = document.get("message") if isinstance(document, dict) else None
        self.notes.append(f"GET {path} answered {answer.status}: {message}")
        return {"status": answer.status, "message": message}

    async def _identities(self) -> object:
        """Module identities by id and generation id, nothing else."""
        answer = await self._answer("/identities")
        if not isinstance(answer, dict) or "identities" not in answer:
            return answer
        return {
            "identities": [
                {"moduleId": found.get("moduleId"), "generationId": found.get("generationId")}
                for found in answer["identities"]
            ]
        }

    async def _certificates(self) -> object:
        try:
            service = self.sources.certs()
            infos = await service.list()
            found = [
                {**info.document(), "subjectAltNames": _alt_names(service.certificate(info.name))}
                for info in infos
            ]
        except EdgekeeperError as error:
            return self._unavailable("certificates", error)
        return {"certificates": found, "degraded": service.degraded}

    async def _engine(self) -> object:
        try:
            return asdict(await self.sources.current().engine_version())
        except EdgekeeperError as error:
            return self._unavailable("engine version", error)

    async def _module_logs(self) -> None:
        run = self.sources.run
        try:
            reconciler = self.sources.current()
        except EdgekeeperError as error:
            self._unavailable("module logs", error)
            return
        names = sorted(reconciler.modules(), key=lambda name: (_rank(reconciler, name), name))
        if self.wanted.edge_runtime_only:
            names = [name for name in names if _rank(reconciler, name) < 2]
        spent = 0
        for name in names:
            part = f"logs/{name}_log.txt"
            room = min(self.limits.module_log_bytes, self.limits.total_log_bytes - spent)
            if room <= 0:
                spent_all = self.limits.total_log_bytes
                self.notes.append(f"{part}: left out, all {spent_all} bytes of logs spent")
                continue
            try:
                data, left_out = await self._module_log(reconciler, name, room)
            except EdgekeeperError as error:
                await run(self.archive.add_text, part, f"no logs: {error.render()}\n")
                continue
            spent += room if left_out else len(data)  # a module cut short used all its room
            text = data.decode("utf-8", "replace")
            if left_out:
                self.notes.append(f"{part}: the first {left_out} bytes left out (over {room})")
                text = f"[{left_out} earlier bytes left out]\n{text}"
            await run(self.archive.add_text, part, text)

    async def _module_log(self, reconciler: Reconciler, name: str, room: int) -> tuple[bytes, int]:
        tail = LogTail(room)
        frames = await reconciler.logs(
            name,
            tail=self.limits.module_log_lines,
            since=self.wanted.since,
            until=self.wanted.until,
            timestamps=True,
        )
        try:
            async for found in frames:
                tail.feed(found.data)
        finally:
            await frames.aclose()
        return tail.result()

    def _unavailable(self, what: str, error: EdgekeeperError) -> dict[str, str]:
        message = error.render()
        self.notes.append(f"{what}: {message}")
        return {"unavailable": message}

    def _manifest(self, config: Config) -> dict[str, Any]:
        return {
            "edgekeeper": {"version": __version__, "build": build_description()},
            "board": config.board.name,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.made_at)),
            "request": asdict(self.wanted),
            "limits": asdict(self.limits),
            "parts": [*self.archive.names, "bundle.json"],
            "notes": self.notes,
        }


def _rank(reconciler: Reconciler, name: str) -> int:
    """0 for the agent, 1 for edgeHub, 2 for every other module."""
    if reconciler.is_agent(name):
        return 0
    return 1 if name == HUB_MODULE else 2


def _lines(lines: list[str]) -> str:
    return "".join(f"{line}\n" for line in lines)


def _alt_names(certificate: x509.Certificate) -> list[str]:
    """The certificate's subject alternative names, as "DNS:gw.local" or "IP:10.0.0.1"."""
    # Deferred: cryptography loads only once a certificate service exists to ask.
    from cryptography import x509

    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    kinds: dict[type[x509.GeneralName], str] = {
        x509.DNSName: "DNS",
        x509.IPAddress: "IP",
        x509.UniformResourceIdentifier: "URI",
        x509.RFC822Name: "email",
    }
    return [f"{kinds.get(type(name), type(name).__name__)}:{name.value}" for name in names]
