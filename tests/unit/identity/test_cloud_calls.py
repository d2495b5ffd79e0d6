"""The cloud driver against small HTTP peers on 127.0.0.1: retries with back-off, jitter and
bounded Retry-After (on an injected sleep that records), unreachable and broken peers, a whole
DPS registration (symmetric key and TPM challenge) and the hub's module identity calls."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest

from firmware.errors import ConfigError
from firmware.http.client import Deadlines, Endpoint, TcpEndpoint
from firmware.identity import sas
from firmware.identity.cloud import CloudCalls, HubIdentities, parse_host
from firmware.identity.dps import Assigned, DpsRegistration
from firmware.identity.errors import (
    CloudAnswerMalformed,
    CloudUnreachable,
    ProvisioningRejected,
)
from firmware.identity.hub import HubModule
from firmware.identity.rest import CloudRequest
from tests.peers import socket_server

QUICK = Deadlines(connect_s=2.0, read_s=2.0, overall_s=5.0)
GET = CloudRequest(
    "GET", "/thing?api-version=1", (("authorization", "SharedAccessSignature x"),), None
)


@dataclass(frozen=True)
class Seen:
    """A request as the peer received it."""

    method: str
    target: str
    headers: dict[str, str]
    body: bytes


Reply = tuple[int, dict[str, str], bytes]
Responder = Callable[[Seen], Reply | None]  # None: close without answering


@dataclass
class Peer:
    host: str
    seen: list[Seen] = field(default_factory=list)


@contextlib.asynccontextmanager
async def peer(respond: Responder) -> AsyncIterator[Peer]:
    """An HTTP peer answering each request (one per connection) with `respond(request)`."""
    seen: list[Seen] = []

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")[:-2]
        method, target, _ = lines[0].split(" ")
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in lines[1:])
        }
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        request = Seen(method, target, headers, body)
        seen.append(request)
        reply = respond(request)
        if reply is None:
            return
        status, reply_headers, reply_body = reply
        head = f"HTTP/1.1 {status} X\r\ncontent-length: {len(reply_body)}\r\n"
        head += "".join(f"{name}: {value}\r\n" for name, value in reply_headers.items())
        writer.write(head.encode() + b"\r\n" + reply_body)
        await writer.drain()

    async with socket_server.serving(
        connection,
        lambda handler: asyncio.start_server(handler, "127.0.0.1", 0),
    ) as server:
        port = server.sockets[0].getsockname()[1]
        yield Peer(f"127.0.0.1:{port}", seen)


def replies(*answers: Reply | None) -> Responder:
    """A responder giving `answers` in turn, the last one forever."""
    queue = list(answers)

    def respond(_: Seen) -> Reply | None:
        return queue.pop(0) if len(queue) > 1 else queue[0]

    return respond


class FakeTime:
    """An injected sleep that records and advances a monotonic clock."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    def monotonic(self) -> float:
        return self.now


def plain(host: str, port: int) -> Endpoint:
    return TcpEndpoint(host, port)


def calls_with(
    time: FakeTime, *, retries: int = 2, factory: Callable[[str, int], Endpoint] = plain
) -> CloudCalls:
    return CloudCalls(
        factory,
        deadlines=QUICK,
        sleep=time.sleep,
        rng=lambda: 0.5,
        retries=retries,
        monotonic=time.monotonic,
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def json_reply(status: int, document: object, **headers: str) -> Reply:
    return status, {"content-type": "application/json", **headers}, json.dumps(document).encode()


# -- parse_host -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("global.azure-devices-provisioning.net", ("global.azure-devices-provisioning.net", 443)),
        (
            "https://global.azure-devices-provisioning.net",
            ("global.azure-devices-provisioning.net", 443),
        ),
        ("https://Hub.Example:8443/", ("hub.example", 8443)),
        ("127.0.0.1:5000", ("127.0.0.1", 5000)),
        ("[::1]:9", ("::1", 9)),
    ],
)
def test_parse_host_reads_the_forms(text: str, parsed: tuple[str, int]) -> None:
    assert parse_host(text) == parsed


@pytest.mark.parametrize(
    "text",
    [
        "",
        "http://hub.example",
        "hub.example:99999",
        "hub.example:0",
        "https://hub/path",
        "a b",
        "https://user:pw@hub",
        "hub?x=1",
        "hub#frag",
        "ftp://hub",
        "hub:port",
    ],
)
def test_parse_host_refuses_anything_else(text: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_host(text)
    assert "host:port" in raised.value.render()
    assert "pw" not in raised.value.render()


# -- send -----------------------------------------------------------------------------------


async def test_send_passes_the_request_with_host_and_user_agent() -> None:
    made: list[tuple[str, int]] = []

    def factory(host: str, port: int) -> Endpoint:
        made.append((host, port))
        return TcpEndpoint(host, port)

    time = FakeTime()
    async with peer(replies(json_reply(200, {"ok": 1}))) as dps:
        request = CloudRequest("PUT", "/a?b=c", (("authorization", "tok"),), b'{"x":1}')
        answer = await calls_with(time, factory=factory).send(f"https://{dps.host}/", request)
    assert (answer.status, answer.json()) == (200, {"ok": 1})
    [seen] = dps.seen
    assert (seen.method, seen.target, seen.body) == ("PUT", "/a?b=c", b'{"x":1}')
    assert seen.headers["host"] == dps.host
    assert seen.headers["authorization"] == "tok"
    assert seen.headers["user-agent"].startswith("edgekeeper/")
    assert made == [parse_host(dps.host)]
    assert time.slept == []


async def test_transient_answers_are_retried_with_growing_jittered_back_off() -> None:
    time = FakeTime()
    async with peer(replies((503, {}, b""), (500, {}, b""), (200, {}, b"done"))) as hub:
        answer = await calls_with(time).send(hub.host, GET)
    assert (answer.status, answer.body, len(hub.seen)) == (200, b"done", 3)
    assert time.slept == [1.25, 2.5]  # 1 s then 2 s, each + 50 % x rng (0.5)


async def test_retry_after_is_honoured_when_longer_than_the_back_off() -> None:
    time = FakeTime()
    async with peer(
        replies((429, {"retry-after": "7"}, b""), (503, {"retry-after": "0"}, b""), (200, {}, b""))
    ) as hub:
        answer = await calls_with(time).send(hub.host, GET)
    assert answer.status == 200
    assert time.slept == [7.0, 2.5]  # Retry-After 0 counts as 1 s, below the back-off


async def test_a_long_retry_after_ends_the_call_with_the_advice() -> None:
    time = FakeTime()
    registration = DpsRegistration("0ne001", "dev")
    async with peer(replies((429, {"retry-after": "60"}, b""))) as dps:
        answer = await calls_with(time).send(dps.host, registration.register("tok"))
    assert (answer.status, len(dps.seen), time.slept) == (429, 1, [])
    with pytest.raises(CloudUnreachable) as raised:
        registration.receive(answer.status, answer.headers, answer.body)
    assert raised.value.retry_after_s == 60.0


async def test_retries_are_bounded_and_the_last_answer_is_returned() -> None:
    time = FakeTime()
    async with peer(replies((500, {}, b"still broken"))) as hub:
        answer = await calls_with(time, retries=3).send(hub.host, GET)
    assert (answer.status, len(hub.seen)) == (500, 4)
    assert time.slept == [1.25, 2.5, 5.0]


async def test_a_dropped_connection_is_retried() -> None:
    time = FakeTime()
    async with peer(replies(None, (200, {}, b"ok"))) as hub:
        answer = await calls_with(time).send(hub.host, GET)
    assert (answer.status, len(hub.seen), time.slept) == (200, 2, [1.25])


async def test_an_unreachable_host_is_unreachable_naming_it_after_the_retries() -> None:
    time = FakeTime()
    port = free_port()
    with pytest.raises(CloudUnreachable) as raised:
        await calls_with(time).send(f"127.0.0.1:{port}", GET)
    rendered = raised.value.render()
    assert f"127.0.0.1:{port}" in rendered and "refused" in rendered
    assert "attempt 3" in rendered and "network" in rendered and "firewall" in rendered
    assert raised.value.retry_after_s is None
    assert time.slept == [1.25, 2.5]


async def test_a_missing_host_name_points_at_dns() -> None:
    time = FakeTime()
    with pytest.raises(CloudUnreachable) as raised:
        await calls_with(time, retries=0).send("no-such-host.invalid", GET)
    assert "DNS" in raised.value.render()
    assert time.slept == []


async def test_a_tls_failure_is_not_retried_and_points_at_the_clock() -> None:
    async def not_tls(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
        await writer.drain()

    time = FakeTime()
    context = ssl.create_default_context()

    def tls(host: str, port: int) -> Endpoint:
        return TcpEndpoint(host, port, tls=context)

    async with socket_server.serving(
        not_tls, lambda h: asyncio.start_server(h, "127.0.0.1", 0)
    ) as server:
        port = server.sockets[0].getsockname()[1]
        with pytest.raises(CloudUnreachable) as raised:
            await calls_with(time, factory=tls).send(f"127.0.0.1:{port}", GET)
    assert "TLS" in raised.value.render() and "clock" in raised.value.render()
    assert time.slept == []


async def test_a_broken_http_answer_is_malformed_and_not_retried() -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"SMTP ready\r\n\r\n")
        await writer.drain()

    time = FakeTime()
    async with socket_server.serving(
        garbage, lambda h: asyncio.start_server(h, "127.0.0.1", 0)
    ) as server:
        port = server.sockets[0].getsockname()[1]
        with pytest.raises(CloudAnswerMalformed):
            await calls_with(time).send(f"127.0.0.1:{port}", GET)
    assert time.slept == []


# -- register -------------------------------------------------------------------------------

SCOPE, REG = "0ne00ABC123", "edge-7"
AUDIENCE = sas.audience_dps(SCOPE, REG)


class Authorizer:
    """An `authorize` handing out numbered tokens and recording the audiences."""

    def __init__(self) -> None:
        self.audiences: list[str] = []

    async def __call__(self, audience: str) -> str:
        self.audiences.append(audience)
        return f"token-{len(self.audiences)}"


def assigned_state(**more: object) -> dict[str, object]:
    return {
        "operationId": "op",
        "status": "assigned",
        "registrationState": {"assignedHub": "hub.example", "deviceId": "edge-7-dev", **more},
    }


async def test_register_polls_with_advised_delays_and_fresh_tokens() -> None:
    time = FakeTime()
    authorize = Authorizer()
    async with peer(
        replies(
            json_reply(202, {"operationId": "op-1", "status": "assigning"}, **{"retry-after": "2"}),
            json_reply(202, {"operationId": "op-1", "status": "assigning"}),
            json_reply(200, assigned_state(substatus="initialAssignment")),
        )
    ) as dps:
        result = await calls_with(time).register(
            dps.host, DpsRegistration(SCOPE, REG), authorize, None, poll_limit_s=60
        )
    assert result == Assigned("hub.example", "edge-7-dev", "initialAssignment", None, None)
    assert [(s.method, s.target.split("?")[0]) for s in dps.seen] == [
        ("PUT", f"/{SCOPE}/registrations/{REG}/register"),
        ("GET", f"/{SCOPE}/registrations/{REG}/operations/op-1"),
        ("GET", f"/{SCOPE}/registrations/{REG}/operations/op-1"),
    ]
    assert [s.headers["authorization"] for s in dps.seen] == ["token-1", "token-2", "token-3"]
    assert authorize.audiences == [AUDIENCE] * 3
    assert time.slept == [2.0, 5.0]


async def test_register_with_tpm_answers_the_challenge_and_imports_keys() -> None:
    time = FakeTime()
    authorize = Authorizer()
    imported: list[bytes] = []

    async def import_challenge(blob: bytes) -> None:
        imported.append(blob)

    challenge = base64.b64encode(b"challenge-blob").decode()
    again = base64.b64encode(b"hub-blob").decode()
    async with peer(
        replies(
            json_reply(401, {"authenticationKey": challenge, "keyName": "registration"}),
            json_reply(200, assigned_state(tpm={"authenticationKey": again})),
        )
    ) as dps:
        result = await calls_with(time).register(
            dps.host,
            DpsRegistration(SCOPE, REG, tpm=(b"ek", b"srk")),
            authorize,
            import_challenge,
            30,
        )
    assert result.authentication_key == b"hub-blob"
    assert imported == [b"challenge-blob", b"hub-blob"]
    assert "authorization" not in dps.seen[0].headers
    assert dps.seen[1].headers["authorization"] == "token-1"
    assert json.loads(dps.seen[0].body)["tpm"] == {
        "endorsementKey": base64.b64encode(b"ek").decode(),
        "storageRootKey": base64.b64encode(b"srk").decode(),
    }


async def test_register_gives_up_when_polling_would_pass_the_limit() -> None:
    time = FakeTime()
    async with peer(
        replies(
            json_reply(202, {"operationId": "op", "status": "assigning"}, **{"retry-after": "300"})
        )
    ) as dps:
        with pytest.raises(CloudUnreachable, match="within 60 s"):
            await calls_with(time).register(
                dps.host, DpsRegistration(SCOPE, REG), Authorizer(), None, 60
            )
    assert time.slept == [30.0, 30.0]  # Retry-After bounded to 30 s
    assert len(dps.seen) == 3


async def test_register_again_when_dps_forgets_the_operation() -> None:
    time = FakeTime()
    async with peer(
        replies(
            json_reply(202, {"operationId": "op", "status": "assigning"}, **{"retry-after": "1"}),
            (404, {}, b""),
            json_reply(200, assigned_state()),
        )
    ) as dps:
        result = await calls_with(time).register(
            dps.host, DpsRegistration(SCOPE, REG), Authorizer(), None, 60
        )
    assert result.device_id == "edge-7-dev"
    assert [s.method for s in dps.seen] == ["PUT", "GET", "PUT"]
    assert time.slept == [1.0, 1.0]


async def test_register_raises_a_rejection() -> None:
    async with peer(
        replies(json_reply(200, {"status": "disabled", "registrationState": {"errorCode": 401}}))
    ) as dps:
        with pytest.raises(ProvisioningRejected, match="status disabled"):
            await calls_with(FakeTime()).register(
                dps.host, DpsRegistration(SCOPE, REG), Authorizer(), None, 60
            )


# -- hub ------------------------------------------------------------------------------------


def hub_module(module_id: str, **more: object) -> dict[str, object]:
    return {"moduleId": module_id, "deviceId": "edge-1", "generationId": "g-1", **more}


async def test_hub_identities_create_set_list_get_delete() -> None:
    def respond(request: Seen) -> Reply:
        path = request.target.split("?")[0]
        if request.method == "PUT" and path.endswith("/m1") and "if-match" not in request.headers:
            return json_reply(409, {"Message": "ErrorCode:ModuleAlreadyExistsOnDevice"})
        if request.method == "PUT" and path.endswith("/m2") and "if-match" not in request.headers:
            return json_reply(200, hub_module("m2"))
        if request.method == "PUT":
            keys = json.loads(request.body)["authentication"]["symmetricKey"]
            assert base64.b64decode(keys["primaryKey"]) == b"p" * 32
            return json_reply(
                200,
                hub_module(
                    "m2", managedBy="iotEdge", authentication={"type": "sas", "symmetricKey": keys}
                ),
            )
        if request.method == "GET" and path.endswith("/modules"):
            return json_reply(200, [hub_module("m1"), hub_module("m2")])
        if request.method == "GET" and path.endswith("/m1"):
            return json_reply(200, hub_module("m1", managedBy="someone"))
        if request.method == "GET":
            return (404, {}, b"")
        return (204, {}, b"") if path.endswith("/m1") else (404, {}, b"")

    authorize = Authorizer()
    async with peer(respond) as hub:
        identities = HubIdentities(calls_with(FakeTime()), hub.host, "edge-1", authorize)
        existing = await identities.create("m1")
        created = await identities.create("m2")
        keyed = await identities.set_keys("m2", b"p" * 32, b"s" * 32, "iotEdge")
        listed = await identities.list()
        missing = await identities.get("m3")
        deleted, absent = await identities.delete("m1"), await identities.delete("m3")
    assert existing == HubModule("m1", "edge-1", "g-1", "someone", False)
    assert created == HubModule("m2", "edge-1", "g-1", None, False)
    assert keyed == HubModule("m2", "edge-1", "g-1", "iotEdge", True)
    assert [m.module_id for m in listed] == ["m1", "m2"]
    assert (missing, deleted, absent) == (None, True, False)
    port = hub.host.split(":")[1]
    assert set(authorize.audiences) == {f"127.0.0.1%3a{port}%2fdevices%2fedge-1"}
    assert all(s.headers["authorization"].startswith("token-") for s in hub.seen)


async def test_hub_tokens_name_the_hub_behind_a_gateway() -> None:
    authorize = Authorizer()
    async with peer(replies(json_reply(200, []))) as gateway:
        identities = HubIdentities(
            calls_with(FakeTime()),
            gateway.host,
            "edge-1",
            authorize,
            hub_name="myhub.azure-devices.net",
        )
        assert await identities.list() == ()
    assert authorize.audiences == ["myhub.azure-devices.net%2fdevices%2fedge-1"]
