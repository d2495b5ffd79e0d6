"""The one HTTP client against small scripted servers, on a unix socket and over TLS on 127.0.0.1:
whole answers, chunked streams, every deadline, and every way a server can fail us."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import json
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from firmware.errors import Unavailable
from firmware.http.client import (
    Deadlines,
    Endpoint,
    HttpClient,
    TcpEndpoint,
    UnixEndpoint,
)
from firmware.http.errors import ExchangeFailed, Failure, Phase
from tests.peers import socket_server
from tests.peers.socket_server import Handler

QUICK = Deadlines(connect_s=2.0, read_s=0.2, overall_s=5.0)


@dataclass(frozen=True)
class Tls:
    server: ssl.SSLContext
    client: ssl.SSLContext


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    """A self-signed certificate for 127.0.0.1, a server using it and a client trusting it."""
    directory = tmp_path_factory.mktemp("tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_file, key_file)
    return Tls(server=server, client=ssl.create_default_context(cafile=str(cert_file)))


@pytest.fixture(params=["unix", "tls"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@contextlib.asynccontextmanager
async def serving(
    handler: Handler, transport: str, tmp_path: Path, tls: Tls
) -> AsyncIterator[Endpoint]:
    """Run `handler` for each connection, on a unix socket or over TLS on 127.0.0.1."""
    if transport == "unix":
        path = str(tmp_path / "server.sock")
        async with socket_server.serving(
            handler, lambda connection: asyncio.start_unix_server(connection, path)
        ):
            yield UnixEndpoint(path)
        return
    async with socket_server.serving(
        handler,
        lambda connection: asyncio.start_server(connection, "127.0.0.1", 0, ssl=tls.server),
    ) as server:
        yield TcpEndpoint("127.0.0.1", server.sockets[0].getsockname()[1], tls=tls.client)


async def read_request(reader: asyncio.StreamReader) -> tuple[list[bytes], bytes]:
    """The request's head lines and body (Content-Length framing)."""
    lines = (await reader.readuntil(b"\r\n\r\n")).split(b"\r\n")[:-2]
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return lines, await reader.readexactly(length)


def scripted(*steps: bytes | float, stay_open: bool = True) -> Handler:
    """A server that reads one request, then sends each bytes step and sleeps each float step;
    then it either stays open (silent) or closes."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        for step in steps:
            if isinstance(step, bytes):
                writer.write(step)
                await writer.drain()
            else:
                await asyncio.sleep(step)
        if stay_open:
            await asyncio.Event().wait()

    return handler


async def failure_of(work: Awaitable[object]) -> tuple[ExchangeFailed, float]:
    started = time.monotonic()
    with pytest.raises(ExchangeFailed) as raised:
        await work
    return raised.value, time.monotonic() - started


async def test_whole_answer_with_request_body_and_headers(
    transport: str, tmp_path: Path, tls: Tls
) -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        lines, body = await read_request(reader)
        document = json.dumps(
            {"line": lines[0].decode(), "head": [x.decode() for x in lines[1:]], "body": body.hex()}
        ).encode()
        writer.write(
            b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nX-Twice: 1\r\n"
            b"x-twice: 2\r\nContent-Length: %d\r\n\r\n%s" % (len(document), document)
        )
        await writer.drain()

    async with serving(echo, transport, tmp_path, tls) as endpoint:
        client = HttpClient(endpoint, deadlines=QUICK, headers=[("user-agent", "tests")])
        answer = await client.request(
            "POST", "/items?a=1", headers=[("content-type", "application/json")], body=b'{"k":1}'
        )
    assert answer.status == 201
    assert answer.headers["content-type"] == "application/json"
    assert answer.headers["x-twice"] == "1, 2"
    document = answer.json()
    assert document["line"] == "POST /items?a=1 HTTP/1.1"
    assert f"host: {endpoint.host}" in document["head"]
    assert "user-agent: tests" in document["head"]
    assert "content-length: 7" in document["head"]
    assert bytes.fromhex(document["body"]) == b'{"k":1}'


async def test_chunked_stream_hands_out_chunks_as_they_come(
    transport: str, tmp_path: Path, tls: Tls
) -> None:
    release = asyncio.Event()

    async def chunks(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\none\n\r\n")
        await writer.drain()
        await release.wait()
        writer.write(b"4\r\ntwo\n\r\n0\r\n\r\n")
        await writer.drain()
        await asyncio.Event().wait()

    async with serving(chunks, transport, tmp_path, tls) as endpoint:
        client = HttpClient(endpoint, deadlines=QUICK)
        async with client.stream("GET", "/logs") as answer:
            assert answer.status == 200
            body = aiter(answer)
            assert await anext(body) == b"one\n"
            release.set()
            assert await anext(body) == b"two\n"
            with pytest.raises(StopAsyncIteration):
                await anext(body)


async def test_read_deadline_ends_a_silent_server(transport: str, tmp_path: Path, tls: Tls) -> None:
    async with serving(scripted(), transport, tmp_path, tls) as endpoint:
        error, took = await failure_of(HttpClient(endpoint, deadlines=QUICK).request("GET", "/"))
    assert (error.failure, error.phase, error.limit) == (Failure.READ_TIMEOUT, Phase.HEAD, 0.2)
    assert 0.2 <= took < 1.5
    assert str(error) == f"{endpoint} went silent while waiting for the answer (0.2 s)"


async def test_read_deadline_ends_a_body_that_stalls(
    transport: str, tmp_path: Path, tls: Tls
) -> None:
    stalls = scripted(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
    async with serving(stalls, transport, tmp_path, tls) as endpoint:
        client = HttpClient(endpoint, deadlines=QUICK)
        error, took = await failure_of(client.request("GET", "/"))
        assert (error.failure, error.phase) == (Failure.READ_TIMEOUT, Phase.BODY)
        assert took < 1.5
        async with client.stream("GET", "/") as answer:
            assert await anext(aiter(answer)) == b"abc"
            error, _ = await failure_of(anext(aiter(answer)))
            assert (error.failure, error.phase) == (Failure.READ_TIMEOUT, Phase.BODY)


async def test_overall_deadline_ends_a_server_that_trickles(
    transport: str, tmp_path: Path, tls: Tls
) -> None:
    trickle = scripted(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", *[0.05, b"x"] * 100)
    async with serving(trickle, transport, tmp_path, tls) as endpoint:
        deadlines = Deadlines(connect_s=2.0, read_s=0.5, overall_s=0.4)
        error, took = await failure_of(
            HttpClient(endpoint, deadlines=deadlines).request("GET", "/")
        )
    assert (error.failure, error.phase, error.limit) == (Failure.OVERALL_TIMEOUT, Phase.BODY, 0.4)
    assert 0.4 <= took < 1.5


async def test_a_following_stream_may_stay_quiet_past_the_read_deadline(
    transport: str, tmp_path: Path, tls: Tls
) -> None:
    quiet = scripted(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", 0.5, b"1\r\nx\r\n")
    async with serving(quiet, transport, tmp_path, tls) as endpoint:
        client = HttpClient(endpoint, deadlines=Deadlines(connect_s=2.0, read_s=0.1, overall_s=0.2))
        async with client.stream("GET", "/events", follow=True) as answer:
            assert await anext(aiter(answer)) == b"x"
        async with client.stream("GET", "/events") as answer:
            error, _ = await failure_of(anext(aiter(answer)))
        assert error.failure.timed_out


@pytest.mark.parametrize(
    ("answer", "failure", "phase"),
    [
        (b"HTTP/1.1 abc\r\n\r\n", Failure.MALFORMED, Phase.HEAD),
        (b"NOT HTTP AT ALL\r\n\r\n", Failure.MALFORMED, Phase.HEAD),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            Failure.MALFORMED,
            Phase.BODY,
        ),
    ],
)
async def test_malformed_answer(
    transport: str, tmp_path: Path, tls: Tls, answer: bytes, failure: Failure, phase: Phase
) -> None:
    async with serving(scripted(answer), transport, tmp_path, tls) as endpoint:
        error, _ = await failure_of(HttpClient(endpoint, deadlines=QUICK).request("GET", "/"))
    assert (error.failure, error.phase) == (failure, phase)
    assert error.detail


@pytest.mark.parametrize(
    ("answer", "phase"),
    [(b"", Phase.HEAD), (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort", Phase.BODY)],
)
async def test_server_closing_early(
    transport: str, tmp_path: Path, tls: Tls, answer: bytes, phase: Phase
) -> None:
    async with serving(scripted(answer, stay_open=False), transport, tmp_path, tls) as endpoint:
        error, _ = await failure_of(HttpClient(endpoint, deadlines=QUICK).request("GET", "/"))
    assert (error.failure, error.phase) == (Failure.CLOSED, phase)


async def test_answer_over_the_size_bound(transport: str, tmp_path: Path, tls: Tls) -> None:
    declared = scripted(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
    chunked = scripted(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"8\r\n12345678\r\n" * 3
    )
    for server, phase in ((declared, Phase.HEAD), (chunked, Phase.BODY)):
        async with serving(server, transport, tmp_path, tls) as endpoint:
            client = HttpClient(endpoint, deadlines=QUICK)
            error, _ = await failure_of(client.request("GET", "/", max_bytes=20))
        assert (error.failure, error.phase, error.limit) == (Failure.TOO_LARGE, phase, 20)


async def test_missing_and_refusing_unix_sockets(tmp_path: Path) -> None:
    missing = HttpClient(UnixEndpoint(str(tmp_path / "absent.sock")))
    error, _ = await failure_of(missing.request("GET", "/"))
    assert (error.failure, error.phase) == (Failure.MISSING, Phase.CONNECT)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(tmp_path / "stale.sock"))
    stale.close()
    stale_client = HttpClient(UnixEndpoint(str(tmp_path / "stale.sock")))
    error, _ = await failure_of(stale_client.request("GET", "/"))
    assert (error.failure, error.phase) == (Failure.REFUSED, Phase.CONNECT)
    assert isinstance(error, Unavailable)
    assert error.http_status == 503


async def test_closed_tcp_port_is_refused() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    error, _ = await failure_of(HttpClient(TcpEndpoint("127.0.0.1", port)).request("GET", "/"))
    assert (error.failure, error.phase) == (Failure.REFUSED, Phase.CONNECT)
    assert error.endpoint == f"http://127.0.0.1:{port}"


async def test_untrusted_server_certificate_fails_the_handshake(tmp_path: Path, tls: Tls) -> None:
    async with serving(scripted(), "tls", tmp_path, tls) as endpoint:
        assert isinstance(endpoint, TcpEndpoint)
        distrusting = TcpEndpoint(endpoint.host, endpoint.port, tls=ssl.create_default_context())
        error, _ = await failure_of(HttpClient(distrusting, deadlines=QUICK).request("GET", "/"))
    assert (error.failure, error.phase) == (Failure.TLS, Phase.CONNECT)
    assert "certificate" in error.detail
