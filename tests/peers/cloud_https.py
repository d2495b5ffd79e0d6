"""The HTTPS server under each cloud peer, with the faults tests inject and the request log.

`HttpsPeer` serves one peer on 127.0.0.1 (ephemeral port unless given), one thread per
connection, HTTP/1.1 keep-alive, TLS with the test CA's server certificate and an optional client
certificate checked against the trusted CAs (`trust()` adds one while running). A subclass
answers a `Call` with an `Answer` in `answer()` and renders its service's error body in
`error()`. Thread-safe switches: `fail_next`, `stall`, `malformed_next`; every request is
logged in `requests` as (method, path, status).
"""

from __future__ import annotations

import json
import ssl
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import NamedTuple
from urllib.parse import parse_qsl, unquote, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.peers.cloud_ca import IssuedCert

HOST = "127.0.0.1"
BROKEN_JSON = b'{"operationId": "'
CONNECTION_TIMEOUT_S = 30
SHUTDOWN_POLL_S = 0.05  # how soon `stop()` ends the accept loop


class Exchange(NamedTuple):
    method: str
    path: str
    status: int


@dataclass(frozen=True)
class Call:
    """One request: `segments` are the path's parts, each percent-decoded."""

    method: str
    path: str
    segments: tuple[str, ...]
    query: Mapping[str, str]
    headers: Mapping[str, str]  # lower-case names
    body: bytes
    client_cert: x509.Certificate | None


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def json(cls, status: int, value: object, headers: tuple[tuple[str, str], ...] = ()) -> Answer:
        return cls(status, json.dumps(value).encode(), headers)


@dataclass
class _Faults:
    failures: list[tuple[int, int | None]] = field(default_factory=list)
    malformed: int = 0
    stall_s: float = 0.0


def server_context(cert: IssuedCert, trust: list[x509.Certificate]) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    with tempfile.TemporaryDirectory() as scratch:
        cert_path, key_path = Path(scratch) / "cert.pem", Path(scratch) / "key.pem"
        cert.write(cert_path, key_path)
        context.load_cert_chain(cert_path, key_path)
    context.verify_mode = ssl.CERT_OPTIONAL
    for anchor in trust:
        context.load_verify_locations(
            cadata=anchor.public_bytes(serialization.Encoding.PEM).decode()
        )
    return context


class HttpsPeer:
    """A cloud service on its own HTTPS port; subclasses implement `answer` and `error`."""

    def __init__(self, cert: IssuedCert, trust: list[x509.Certificate], port: int = 0) -> None:
        self._lock = threading.RLock()
        self._faults = _Faults()
        self._requests: list[Exchange] = []
        self._stopping = threading.Event()
        self._context = server_context(cert, trust)
        self._server = _Server((HOST, port), self, self._context)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            args=(SHUTDOWN_POLL_S,),
            name=type(self).__name__,
            daemon=True,
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()

    def trust(self, ca: x509.Certificate) -> None:
        """Accept client certificates issued by `ca` (or `ca` itself, when self-signed)."""
        self._context.load_verify_locations(
            cadata=ca.public_bytes(serialization.Encoding.PEM).decode()
        )

    @property
    def requests(self) -> list[Exchange]:
        with self._lock:
            return list(self._requests)

    def fail_next(self, count: int, status: int, retry_after: int | None = None) -> None:
        """Answer the next `count` requests with `status` (e.g. 429, 500, 503) and the service's
        error body, with a Retry-After header when `retry_after` is given."""
        with self._lock:
            self._faults.failures.extend([(status, retry_after)] * count)

    def malformed_next(self, count: int) -> None:
        """Answer the next `count` requests 200 with a JSON body cut short."""
        with self._lock:
            self._faults.malformed += count

    def stall(self, seconds: float) -> None:
        """Hold every answer for `seconds` (0 ends it); `stop()` releases stalled answers."""
        with self._lock:
            self._faults.stall_s = seconds

    def answer(self, call: Call) -> Answer:
        raise NotImplementedError

    def error(self, status: int, message: str) -> Answer:
        raise NotImplementedError

    def respond(self, call: Call) -> Answer:
        with self._lock:
            stall_s = self._faults.stall_s
        if stall_s:
            self._stopping.wait(stall_s)
        with self._lock:
            failure = self._faults.failures.pop(0) if self._faults.failures else None
            malformed = self._faults.malformed > 0 and failure is None
            if malformed:
                self._faults.malformed -= 1
        if failure is not None:
            status, retry_after = failure
            answer = self.error(status, f"injected failure {status}")
            if retry_after is not None:
                answer = Answer(
                    answer.status, answer.body, (*answer.headers, ("Retry-After", str(retry_after)))
                )
        elif malformed:
            answer = Answer(200, BROKEN_JSON)
        else:
            answer = self.answer(call)
        with self._lock:
            self._requests.append(Exchange(call.method, call.path, answer.status))
        return answer


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], peer: HttpsPeer, context: ssl.SSLContext) -> None:
        self.peer = peer
        super().__init__(address, _Handler)
        self.socket = context.wrap_socket(
            self.socket, server_side=True, do_handshake_on_connect=False
        )

    def handle_error(self, request: object, client_address: object) -> None:
        """A client that failed the TLS handshake or went away is not the test's error."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = CONNECTION_TIMEOUT_S
    server: _Server

    def setup(self) -> None:
        self.request.settimeout(self.timeout)
        self.request.do_handshake()  # here, in the connection's thread, not in accept()
        super().setup()

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the peer's `requests` is the log."""

    def do_GET(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        target = urlsplit(self.path)
        der = self.request.getpeercert(binary_form=True)
        call = Call(
            method=self.command,
            path=target.path,
            segments=tuple(unquote(part) for part in target.path.strip("/").split("/")),
            query=dict(parse_qsl(target.query)),
            headers={name.lower(): value for name, value in self.headers.items()},
            body=body,
            client_cert=x509.load_der_x509_certificate(der) if der else None,
        )
        answer = self.server.peer.respond(call)
        self.send_response(answer.status)
        for name, value in answer.headers:
            self.send_header(name, value)
        if answer.status != 204:
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        if answer.status != 204:
            self.wfile.write(answer.body)
