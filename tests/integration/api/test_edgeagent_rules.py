"""The edgeAgent replay's own rules (tests/peers/edgeagent.py), against canned answers on a unix
socket: what edgeAgent's client sends, and the answers it refuses. Each refusal here is one a
daemon could make; the replay must turn it into an AssertionError, or its passes mean nothing."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.peers.edgeagent import (
    NEWEST,
    EdgeAgent,
    check_identity,
    check_module_list,
    check_system_resources,
    module_spec,
)


class CannedServer:
    """Answers every connection with `answer` after reading the request head (and body)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.answer = b""
        self.requests: list[bytes] = []
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(path))
        self.listener.listen()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, _, body = data.partition(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":")[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    ),
                    0,
                )
                while len(body) < length:
                    body += conn.recv(65536)
                self.requests.append(data if len(body) == length else head + b"\r\n\r\n" + body)
                conn.sendall(self.answer)

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def canned(tmp_path: Path) -> Iterator[CannedServer]:
    server = CannedServer(tmp_path / "mgmt.sock")
    yield server
    server.close()


def answer(status: str, body: bytes = b"", *headers: str) -> bytes:
    head = [f"HTTP/1.1 {status}", *headers, f"Content-Length: {len(body)}", "Connection: close"]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


MODULE = {
    "id": "c1",
    "name": "m",
    "type": "docker",
    "config": {"settings": {"image": "busybox:1", "createOptions": {}}, "env": []},
    "status": {"startTime": "2024-01-01T00:00:00.5Z", "runtimeStatus": {"status": "running"}},
}
IDENTITY = {"moduleId": "m", "managedBy": "IotEdge", "generationId": "1", "authType": "Sas"}


def test_requests_carry_edgeagent_headers_and_body(canned: CannedServer) -> None:
    canned.answer = answer("204 No Content")
    agent = EdgeAgent(canned.path, NEWEST, timeout_s=5)
    agent.prepare_update(
        module_spec("m $x", "busybox:1", {"Cmd": ["true"]}, NEWEST, env={"A": "b"})
    )
    agent.start("m")
    prepare, start = canned.requests
    head, _, body = prepare.partition(b"\r\n\r\n")
    assert head.split(b"\r\n") == [
        b"POST /modules/m+%24x/prepareupdate?api-version=2022-08-03 HTTP/1.1",
        b"Host: mgmt.sock:80",
        b"Connection: close",
        b"Content-Type: application/json",
        f"Content-Length: {len(body)}".encode(),
    ]
    sent = json.loads(body)
    assert sent["imagePullPolicy"] == "Never" and sent["config"]["env"] == []
    assert sent["config"]["settings"] == {
        "image": "busybox:1",
        "createOptions": {"Cmd": ["true"]},
        "digest": None,
        "auth": None,
    }
    assert b"Content-Type: application/json; charset=utf-8\r\nContent-Length: 0\r\n\r\n" in start


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b'HTTP/1.1 200\r\nContent-Length: 15\r\n\r\n{"modules":[]}', "no reason phrase"),
        (b"HTTP/1.1 299 Odd\r\nContent-Length: 2\r\n\r\n{}", "HttpStatusCode"),
        (b"HTTP/1.1 200 OK\nContent-Length: 2\n\n{}", "CRLF"),
        (answer("200 OK", b'{"modules":[]}', "Content-Type: a/b", "Content-Type: a/b"), "repeated"),
        (b'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{"modules":[]}', "Content-Length"),
        (answer("200 OK", b'{"modules":[{"name":"m"}]}'), "Required.Always"),
        (
            answer(
                "200 OK",
                json.dumps(
                    {
                        "modules": [
                            {
                                **MODULE,
                                "config": {"settings": json.dumps(MODULE["config"]["settings"])},
                            }
                        ]
                    }
                ).encode(),
            ),
            "JObject",
        ),
        (
            answer(
                "200 OK",
                json.dumps(
                    {
                        "modules": [
                            {
                                **MODULE,
                                "status": {
                                    "exitStatus": {"exitTime": None, "statusCode": "1"},
                                    "runtimeStatus": {"status": "failed"},
                                },
                            }
                        ]
                    }
                ).encode(),
            ),
            "exitTime",
        ),
        (
            answer(
                "200 OK",
                json.dumps(
                    {
                        "modules": [
                            {
                                **MODULE,
                                "status": {
                                    "startTime": "2024-01-01 10:00:00",
                                    "runtimeStatus": {"status": "running"},
                                },
                            }
                        ]
                    }
                ).encode(),
            ),
            "startTime",
        ),
    ],
)
def test_list_modules_answers_edgeagent_refuses(canned: CannedServer, raw: bytes, why: str) -> None:
    canned.answer = raw
    with pytest.raises(AssertionError, match=why):
        EdgeAgent(canned.path, NEWEST, timeout_s=5).list_modules()


def test_identity_create_needs_200_not_201(canned: CannedServer) -> None:
    canned.answer = answer("201 Created", json.dumps(IDENTITY).encode())
    with pytest.raises(AssertionError, match="NullReferenceException"):
        EdgeAgent(canned.path, NEWEST, timeout_s=5).create_identity("m")
    canned.answer = answer("200 OK", json.dumps(IDENTITY).encode())
    assert EdgeAgent(canned.path, NEWEST, timeout_s=5).create_identity("m") == IDENTITY


def test_an_empty_unexpected_2xx_fails_before_2021_12_07_only(canned: CannedServer) -> None:
    canned.answer = answer("204 No Content")
    EdgeAgent(canned.path, NEWEST, timeout_s=5).call("reprovision")
    with pytest.raises(AssertionError, match="null result"):
        EdgeAgent(canned.path, "2020-07-07", timeout_s=5).call("reprovision")


def test_an_error_response_on_a_2xx_is_an_error(canned: CannedServer) -> None:
    canned.answer = answer("200 OK", b'{"message":"done"}')
    with pytest.raises(AssertionError, match="ErrorResponse"):
        EdgeAgent(canned.path, NEWEST, timeout_s=5).start("m")


def test_a_kept_open_connection_hangs_edgeagent(tmp_path: Path) -> None:
    path = tmp_path / "open.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(str(path))
        listener.listen()

        def serve() -> None:
            conn, _ = listener.accept()
            conn.recv(65536)
            conn.sendall(answer("200 OK", b'{"modules":[]}').replace(b"Connection: close", b"X: y"))
            threading.Event().wait(3)
            conn.close()

        threading.Thread(target=serve, daemon=True).start()
        with pytest.raises(AssertionError, match="kept the connection open"):
            EdgeAgent(path, NEWEST, timeout_s=1).list_modules()


def test_dto_rules() -> None:
    check_module_list({"modules": [MODULE]})
    check_identity({**IDENTITY, "authType": "sas"})
    with pytest.raises(AssertionError, match="authType"):
        check_identity({**IDENTITY, "authType": "token"})
    resources = {
        "host_uptime": 1,
        "process_uptime": 1,
        "used_cpu": 0.5,
        "used_ram": 1,
        "total_ram": 2,
        "disks": [
            {
                "name": "sda",
                "available_space": 1,
                "total_space": 2,
                "file_system": "ext4",
                "file_type": "SSD",
            }
        ],
        "docker_stats": '[{"name": "/m"}]',
    }
    check_system_resources(resources)
    with pytest.raises(AssertionError, match="docker_stats"):
        check_system_resources({**resources, "docker_stats": "{}"})
    with pytest.raises(AssertionError, match="Substring"):
        check_system_resources({**resources, "docker_stats": '[{"name": ""}]'})
    del resources["disks"][0]["file_type"]
    with pytest.raises(AssertionError, match="file_type"):
        check_system_resources(resources)
