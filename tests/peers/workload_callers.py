"""IoT Edge's own workload API callers, replayed: the bytes each sends and what each accepts back.

Three callers, written from their sources (facts and file names in each docstring; the whole
contract is in the helper notes, workload_callers_contract.md):

- `EdgeUtilClient`: edge-util's `WorkloadClient`, used by edgeHub and edgeAgent (C#, .NET
  `HttpClient` over `HttpUdsMessageHandler`). Released edgeHub/edgeAgent send api-version
  `2019-01-30` (1.2.x) or `2020-07-07` (1.3 and later) whatever `IOTEDGE_APIVERSION` says, because
  edge-util's `ApiVersion` table does not know `2020-10-10` and falls back to the client's constant.
- `EdgeletClient`: the Rust crate `mqtt/edgelet-client` used by the api-proxy module (hyper over
  hyperlocal), api-version `2019-01-30` on every call, connections kept alive.
- `CSdkClient`: the Azure IoT C SDK's `hsm_client_http_edge.c` over azure-uhttp-c, api-version
  `2018-06-28`, sign and trust bundle only.

Each builder returns a `WorkloadCall`: the byte writes the client makes and the status it takes as
success. `ResponseReader` frames the answer (sans-IO); `exchange` sends calls over a unix socket.
The `*_of` validators apply the callers' response DTOs and raise `ContractViolation` naming the
rule and the source file it comes from.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

EDGE_UTIL = "iotedge:edge-util/src/Microsoft.Azure.Devices.Edge.Util"
EDGE_UTIL_GENERATED = f"{EDGE_UTIL}/edged/version_2019_01_30/generatedCode/HttpWorkloadClient.cs"
EDGE_UTIL_UDS = f"{EDGE_UTIL}/uds/HttpRequestResponseSerializer.cs"
EDGELET_CLIENT = "iotedge:mqtt/edgelet-client/src/workload/client.rs"
API_PROXY_CERTS = "iotedge:edge-modules/api-proxy-module/src/monitors/certs_monitor.rs"
CSDK = "azure-iot-sdk-c:provisioning_client/adapters/hsm_client_http_edge.c"
UHTTP = "azure-uhttp-c:src/uhttp.c"
EDGELET_TRUST = "iotedge:edgelet/edgelet-http-workload/src/trust_bundle.rs"
EDGELET_SERVER_CERT = "iotedge:edgelet/edgelet-http-workload/src/module/cert/server.rs"

# What edgeHub/edgeAgent send, by release (Constants.WorkloadApiVersion, see the module docstring).
EDGE_UTIL_VERSIONS = ("2019-01-30", "2020-07-07")
EDGELET_CLIENT_VERSION = "2019-01-30"
CSDK_VERSION = "2018-06-28"

IN_CONTAINER_SOCKET = "/var/run/iotedge/workload.sock"


class ContractViolation(AssertionError):
    """An answer a real caller would reject; the message names the rule and its source."""


@dataclass(frozen=True)
class WorkloadCall:
    """One request as a caller puts it on the wire: `writes` in order, the status it accepts."""

    caller: str
    what: str
    writes: tuple[bytes, ...]
    success: frozenset[int]
    keep_alive: bool

    @property
    def wire(self) -> bytes:
        return b"".join(self.writes)


@dataclass(frozen=True)
class WireResponse:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    framed: bool  # by Content-Length or chunked, not by the connection's end

    def header(self, name: str) -> str | None:
        found = [value for key, value in self.headers if key.lower() == name.lower()]
        return found[0] if found else None

    def json(self) -> object:
        try:
            return json.loads(self.body)
        except ValueError:
            raise ContractViolation(
                f"answer {self.status} is not JSON: {self.body[:200]!r}"
            ) from None


# --- requests -------------------------------------------------------------------------------


def _json(document: dict[str, str]) -> bytes:
    # Newtonsoft, serde_json and parson all write compact JSON; key order is the DTO's.
    return json.dumps(document, separators=(",", ":")).encode()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def dotnet_url_encode(text: str) -> str:
    """`System.Net.WebUtility.UrlEncode`: A-Z a-z 0-9 and `-_.!*()` kept, space as `+`, the rest
    `%XX` in upper case (how the generated client puts `{name}` and `{genid}` in the path)."""
    kept = set("-_.!*()")
    out = []
    for byte in text.encode():
        char = chr(byte)
        if char.isascii() and (char.isalnum() or char in kept):
            out.append(char)
        elif char == " ":
            out.append("+")
        else:
            out.append(f"%{byte:02X}")
    return "".join(out)


def rust_percent_encode(text: str, *, dollar: bool) -> str:
    """`percent_encoding::percent_encode` with edgelet-client's sets
    (mqtt/edgelet-client/src/lib.rs): PATH_SEGMENT_ENCODE_SET is controls plus space
    `"<>`#?{}`; IOTHUB_ENCODE_SET adds `$`."""
    encoded = set(' "<>`#?{}') | ({"$"} if dollar else set())
    out = []
    for byte in text.encode():
        if byte < 0x20 or byte >= 0x7F or chr(byte) in encoded:
            out.append(f"%{byte:02X}")
        else:
            out.append(chr(byte))
    return "".join(out)


def c_url_encode(text: str) -> str:
    """azure-c-shared-utility's `URL_Encode` for ASCII: `!()*-._` and alphanumerics kept, the
    rest `%xx` in lower case."""
    kept = set("!()*-._")
    return "".join(
        char if char.isascii() and (char.isalnum() or char in kept) else f"%{ord(char):02x}"
        for char in text
    )


def dotnet_datetime(when: datetime) -> str:
    """A UTC `DateTime` as Newtonsoft writes it (round-trip "o" format: 7 fractional digits, Z)."""
    return when.strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


def chrono_rfc3339(when: datetime) -> str:
    """`chrono::DateTime<Utc>::to_rfc3339()`: nanoseconds when there are any, `+00:00`."""
    return when.strftime("%Y-%m-%dT%H:%M:%S.%f") + "000+00:00"


@dataclass(frozen=True)
class EdgeUtilClient:
    """edge-util `WorkloadClient` (edgeHub, edgeAgent) at one api-version.

    Wire (EDGE_UTIL_UDS `SerializeRequest`/`PreProcessRequest`, EDGE_UTIL_GENERATED): request
    line with the URI's PathAndQuery; `Accept: application/json` (generated code), then
    `Connection: close` and `Host: workload.sock:80` (base URL `http://<last segment of the unix
    URI>`, HttpClientHelper.GetBaseUrl), then the content headers `Content-Type:
    application/json` and `Content-Length`; the head and the body are two writes
    (HttpUdsMessageHandler.SendAsync). A new connection per request."""

    api_version: str
    name: str = "edge-util"

    def _call(
        self, what: str, method: str, path: str, body: bytes | None, success: int
    ) -> WorkloadCall:
        head = [
            f"{method} {path}?api-version={self.api_version} HTTP/1.1",
            "Accept: application/json",
            "Connection: close",
            "Host: workload.sock:80",
        ]
        if body is not None:
            head += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
        writes = ("\r\n".join(head) + "\r\n\r\n").encode("ascii"), *((body,) if body else ())
        return WorkloadCall(self.name, what, tuple(writes), frozenset({success}), keep_alive=False)

    def _module(self, module_id: str, genid: str) -> str:
        return f"/modules/{dotnet_url_encode(module_id)}/genid/{dotnet_url_encode(genid)}"

    def sign(self, module_id: str, genid: str, text: str) -> WorkloadCall:
        """SignAsync("primary", "HMACSHA256", text): `data` is base64 of the UTF-8 text (byte[]
        in SignRequest); success 200 (EDGE_UTIL_GENERATED; edged/HttpHsmSignatureProvider.cs)."""
        body = {"keyId": "primary", "algo": "HMACSHA256", "data": _b64(text.encode())}
        return self._call(
            "sign", "POST", f"{self._module(module_id, genid)}/sign", _json(body), 200
        )

    def encrypt(self, module_id: str, genid: str, iv: str, plaintext: str) -> WorkloadCall:
        """EncryptAsync: plaintext and IV as UTF-8 bytes, base64 (byte[]); success 200. The IV
        edgeHub/edgeAgent use is `Guid.NewGuid().ToString("N")` (edged/EncryptionProvider.cs)."""
        body = {"plaintext": _b64(plaintext.encode()), "initializationVector": _b64(iv.encode())}
        return self._call(
            "encrypt", "POST", f"{self._module(module_id, genid)}/encrypt", _json(body), 200
        )

    def decrypt(self, module_id: str, genid: str, iv: str, ciphertext_b64: str) -> WorkloadCall:
        """DecryptAsync: the ciphertext string as the encrypt answer gave it; success 200."""
        body = {"ciphertext": ciphertext_b64, "initializationVector": _b64(iv.encode())}
        return self._call(
            "decrypt", "POST", f"{self._module(module_id, genid)}/decrypt", _json(body), 200
        )

    def server_certificate(
        self, module_id: str, genid: str, hostname: str, expiration: datetime
    ) -> WorkloadCall:
        """CreateServerCertificateAsync(EdgeDeviceHostName, UtcNow + validity): success 201
        (EDGE_UTIL_GENERATED; edge-hub EdgeHubCertificates.cs)."""
        body = {"commonName": hostname, "expiration": dotnet_datetime(expiration)}
        path = f"{self._module(module_id, genid)}/certificate/server"
        return self._call("server certificate", "POST", path, _json(body), 201)

    def trust_bundle(self) -> WorkloadCall:
        return self._call("trust bundle", "GET", "/trust-bundle", None, 200)

    def manifest_trust_bundle(self) -> WorkloadCall:
        """Only edge-util's `Version_2020_07_07` class calls it (released clients answer ""
        without a request): GET, success 200
        (edged/version_2020_07_07/generatedCode/HttpWorkloadClient.cs)."""
        return self._call("manifest trust bundle", "GET", "/manifest-trust-bundle", None, 200)


@dataclass(frozen=True)
class EdgeletClient:
    """mqtt/edgelet-client's `WorkloadClient` (the api-proxy module), api-version 2019-01-30.

    Wire (hyper over hyperlocal, EDGELET_CLIENT and mqtt/edgelet-client/src/lib.rs): `host:
    <hex of the socket path>:0`, `content-length` on POST, no Content-Type, no Accept, no
    Connection header: the connection is kept alive and reused. Success is the exact status."""

    socket_path: str = IN_CONTAINER_SOCKET
    api_version: str = EDGELET_CLIENT_VERSION
    name: str = "edgelet-client"

    def _call(
        self, what: str, method: str, path: str, body: bytes | None, success: int
    ) -> WorkloadCall:
        head = [
            f"{method} {path}?api-version={self.api_version} HTTP/1.1",
            f"host: {self.socket_path.encode().hex()}:0",
        ]
        if body is not None:
            head.append(f"content-length: {len(body)}")
        wire = ("\r\n".join(head) + "\r\n\r\n").encode("ascii") + (body or b"")
        return WorkloadCall(self.name, what, (wire,), frozenset({success}), keep_alive=True)

    def sign(self, module_id: str, genid: str, text: str) -> WorkloadCall:
        """`sign`: name through IOTHUB_ENCODE_SET (`$` -> %24), genid through
        PATH_SEGMENT_ENCODE_SET; `data` base64 of the text; success 200."""
        path = (
            f"/modules/{rust_percent_encode(module_id, dollar=True)}"
            f"/genid/{rust_percent_encode(genid, dollar=False)}/sign"
        )
        body = {"keyId": "primary", "algo": "HMACSHA256", "data": _b64(text.encode())}
        return self._call("sign", "POST", path, _json(body), 200)

    def server_certificate(
        self, module_id: str, genid: str, hostname: str, expiration: datetime
    ) -> WorkloadCall:
        """`create_server_cert`: module id and genid unencoded; the api-proxy asks for
        IOTEDGE_GATEWAYHOSTNAME for 90 days (API_PROXY_CERTS); success 201."""
        path = f"/modules/{module_id}/genid/{genid}/certificate/server"
        body = {"commonName": hostname, "expiration": chrono_rfc3339(expiration)}
        return self._call("server certificate", "POST", path, _json(body), 201)

    def trust_bundle(self) -> WorkloadCall:
        return self._call("trust bundle", "GET", "/trust-bundle", None, 200)


@dataclass(frozen=True)
class CSdkClient:
    """The C SDK's edge HSM client (CSDK), api-version 2018-06-28, over azure-uhttp-c (UHTTP).

    Wire: request line, the caller's `Content-Type: application/json; charset=utf-8` (POST only),
    `Host: <socket path>:0` (uhttp adds host:port; the "host" is the path after unix://), then
    `Content-Length: N` always (0 on the GET); no Connection header; head and body are two
    writes. Any status below 300 is success (`on_edge_hsm_http_recv`)."""

    socket_path: str = IN_CONTAINER_SOCKET
    api_version: str = CSDK_VERSION
    name: str = "c-sdk"

    def _call(self, what: str, method: str, path: str, body: bytes | None) -> WorkloadCall:
        head = [f"{method} {path}?api-version={self.api_version} HTTP/1.1"]
        if body is not None:
            head.append("Content-Type: application/json; charset=utf-8")
        head += [f"Host: {self.socket_path}:0", f"Content-Length: {len(body or b'')}"]
        writes = ("\r\n".join(head) + "\r\n\r\n").encode("ascii"), *((body,) if body else ())
        return WorkloadCall(
            self.name, what, tuple(writes), frozenset(range(200, 300)), keep_alive=True
        )

    @staticmethod
    def signed_text(data: str) -> str:
        """What the daemon is asked to sign for `"<scope>\\n<expiry>"`: the scope URL-encoded, the
        newline and expiry as given (`construct_json_signing_blob`)."""
        scope, newline, rest = data.partition("\n")
        if not newline or not rest:
            raise ValueError("the C SDK signs only '<scope>\\n<expiry>'")
        return f"{c_url_encode(scope)}\n{rest}"

    def sign(self, module_id: str, genid: str, data: str) -> WorkloadCall:
        """`hsm_client_http_edge_sign_data`: module id and genid unencoded in the path."""
        body = {
            "keyId": "primary",
            "algo": "HMACSHA256",
            "data": _b64(self.signed_text(data).encode()),
        }
        return self._call("sign", "POST", f"/modules/{module_id}/genid/{genid}/sign", _json(body))

    def trust_bundle(self) -> WorkloadCall:
        return self._call("trust bundle", "GET", "/trust-bundle", None)


# --- answers --------------------------------------------------------------------------------


class ResponseReader:
    """Frames one HTTP/1.1 answer from bytes fed in (sans-IO): by Content-Length, by chunked
    transfer coding, or, without either, by the end of the connection (`end()`)."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> WireResponse | None:
        self._buffer += data
        return self._parse(at_end=False)

    def end(self) -> WireResponse | None:
        return self._parse(at_end=True)

    @property
    def leftover(self) -> bytes:
        return self._buffer

    def _parse(self, at_end: bool) -> WireResponse | None:
        head, sep, rest = self._buffer.partition(b"\r\n\r\n")
        if not sep:
            if at_end:
                raise ContractViolation(
                    f"connection closed inside the head: {self._buffer[:200]!r}"
                )
            return None
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 3 or parts[0] != "HTTP/1.1" or not parts[1].isdigit():
            # HttpRequestResponseSerializer.SetResponseStatusLine needs version, code and reason
            raise ContractViolation(f"bad status line {lines[0]!r} ({EDGE_UTIL_UDS})")
        headers = tuple(
            (name.strip(), value.strip())
            for name, _, value in (line.partition(":") for line in lines[1:])
        )
        answer = WireResponse(int(parts[1]), headers, b"", framed=True)
        length = answer.header("Content-Length")
        if length is not None:
            if len(rest) < int(length):
                return self._unframed(answer, rest) if at_end else None
            self._buffer = rest[int(length) :]
            return WireResponse(answer.status, headers, rest[: int(length)], framed=True)
        if (answer.header("Transfer-Encoding") or "").lower() == "chunked":
            return self._chunked(answer, rest, at_end)
        return self._unframed(answer, rest) if at_end else None

    def _chunked(self, answer: WireResponse, rest: bytes, at_end: bool) -> WireResponse | None:
        body = b""
        while True:
            size_line, sep, after = rest.partition(b"\r\n")
            if not sep:
                return self._unframed(answer, body) if at_end else None
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                self._buffer = after.partition(b"\r\n")[2]
                return WireResponse(answer.status, answer.headers, body, framed=True)
            if len(after) < size + 2:
                return self._unframed(answer, body) if at_end else None
            body += after[:size]
            rest = after[size + 2 :]

    def _unframed(self, answer: WireResponse, body: bytes) -> WireResponse:
        self._buffer = b""
        return WireResponse(answer.status, answer.headers, body, framed=False)


def exchange(
    socket_path: Path, calls: Sequence[WorkloadCall], timeout_s: float = 20
) -> list[WireResponse]:
    """Send `calls` on one connection, as the client would (each write separately), and read an
    answer after each. A keep-alive caller's later calls ride the same connection; the answers
    it reads must be framed, since it never waits for the connection to end."""
    answers: list[WireResponse] = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout_s)
        conn.connect(str(socket_path))
        reader = ResponseReader()
        for call in calls:
            for write in call.writes:
                conn.sendall(write)
            answer = reader.feed(b"")
            while answer is None:
                try:
                    chunk = conn.recv(65536)
                except TimeoutError:
                    raise ContractViolation(
                        f"{call.caller} {call.what}: no complete answer within {timeout_s} s "
                        f"(read {reader.leftover[:200]!r})"
                    ) from None
                answer = reader.feed(chunk) if chunk else reader.end()
                if not chunk and answer is None:
                    raise ContractViolation(
                        f"{call.caller} {call.what}: connection closed, no answer"
                    )
            answers.append(answer)
    return answers


def accepted(call: WorkloadCall, answer: WireResponse) -> dict[str, object]:
    """The answer's JSON object if `call`'s client takes it as success, else ContractViolation."""
    if answer.status not in call.success:
        raise ContractViolation(
            f"{call.caller} {call.what}: status {answer.status} (the client accepts only "
            f"{sorted(call.success) if len(call.success) < 5 else '2xx'}): {answer.body[:300]!r}"
        )
    if call.keep_alive and not answer.framed:
        raise ContractViolation(
            f"{call.caller} {call.what}: answer not framed by Content-Length or chunked; a "
            f"keep-alive client ({EDGELET_CLIENT} / {UHTTP}) would wait for it forever"
        )
    document = answer.json()
    if not isinstance(document, dict):
        raise ContractViolation(f"{call.caller} {call.what}: answer is not a JSON object")
    return document


def _string_field(document: dict[str, object], field: str, source: str) -> str:
    value = document.get(field)
    if not isinstance(value, str):
        raise ContractViolation(
            f"field {field!r} must be a string (Required.Always / String in {source}): {value!r}"
        )
    return value


def _base64_field(document: dict[str, object], field: str, source: str) -> bytes:
    text = _string_field(document, field, source)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ContractViolation(
            f"field {field!r} is not standard base64 (byte[] in {source}): {text!r}"
        ) from None


def digest_of(call: WorkloadCall, answer: WireResponse) -> bytes:
    """`SignResponse.digest`: base64 (byte[] in EDGE_UTIL_GENERATED; used verbatim as the SAS
    signature by the api-proxy and the C SDK)."""
    return _base64_field(accepted(call, answer), "digest", EDGE_UTIL_GENERATED)


def ciphertext_of(call: WorkloadCall, answer: WireResponse) -> str:
    """`EncryptResponse.ciphertext`: base64 (byte[]), handed back as text to decrypt."""
    document = accepted(call, answer)
    _base64_field(document, "ciphertext", EDGE_UTIL_GENERATED)
    return _string_field(document, "ciphertext", EDGE_UTIL_GENERATED)


def plaintext_of(call: WorkloadCall, answer: WireResponse) -> str:
    """`DecryptResponse.plaintext`: base64 (byte[]) read as UTF-8 (DecryptAsync)."""
    return _base64_field(accepted(call, answer), "plaintext", EDGE_UTIL_GENERATED).decode()


def trust_bundle_of(call: WorkloadCall, answer: WireResponse) -> list[x509.Certificate]:
    """`TrustBundleResponse.certificate`: PEM certificates, at least one (edge-util
    CertificateHelper.ParseTrustedBundleCerts; the api-proxy writes it as its CA file)."""
    pem = _string_field(accepted(call, answer), "certificate", EDGE_UTIL_GENERATED)
    try:
        certificates = x509.load_pem_x509_certificates(pem.encode())
    except ValueError as error:
        raise ContractViolation(f"trust bundle is not PEM certificates: {error}") from None
    return certificates


def manifest_trust_bundle_of(call: WorkloadCall, answer: WireResponse) -> str:
    """`ManifestTrustBundleResponse.certificate`: a string, "" when none is configured
    (EDGELET_TRUST: the manifest bundle is optional, a missing one is 200 with "")."""
    return _string_field(accepted(call, answer), "certificate", EDGELET_TRUST)


@dataclass(frozen=True)
class IssuedServerCertificate:
    leaf: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    expiration: datetime

    def dns_names(self) -> list[str]:
        try:
            sans = self.leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        except x509.ExtensionNotFound:
            return []
        return list(sans.value.get_values_for_type(x509.DNSName))


_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")


def certificate_of(call: WorkloadCall, answer: WireResponse) -> IssuedServerCertificate:
    """`CertificateResponse`: `privateKey` {type "key", bytes: PEM key} (PrivateKeyType enum
    "ref"/"key" in EDGE_UTIL_GENERATED; `bytes` None is "Private key field is empty" in
    API_PROXY_CERTS), `certificate` PEM leaf first (edge-util
    CertificateHelper.ParseCertificateAndKey), `expiration` RFC 3339 (API_PROXY_CERTS
    `parse_from_rfc3339`; a DateTime for edge-util)."""
    document = accepted(call, answer)
    key = document.get("privateKey")
    if not isinstance(key, dict) or key.get("type") not in ("key", "ref"):
        raise ContractViolation(
            f"privateKey must be an object with type key/ref ({EDGE_UTIL_GENERATED}): {key!r}"
        )
    if key.get("type") != "key" or not isinstance(key.get("bytes"), str):
        raise ContractViolation(
            f"privateKey must carry its PEM in 'bytes' ({API_PROXY_CERTS}): {key!r}"
        )
    pem = _string_field(document, "certificate", EDGE_UTIL_GENERATED)
    try:
        certificates = x509.load_pem_x509_certificates(pem.encode())
        private_key = serialization.load_pem_private_key(str(key["bytes"]).encode(), None)
    except ValueError as error:
        raise ContractViolation(f"certificate or private key is not PEM: {error}") from None
    leaf = certificates[0]
    if leaf.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) != private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ):
        raise ContractViolation("the private key is not the leaf's (edge-util AttachPrivateKey)")
    expiration = _string_field(document, "expiration", EDGE_UTIL_GENERATED)
    if not _RFC3339.fullmatch(expiration):
        raise ContractViolation(f"expiration {expiration!r} is not RFC 3339 ({API_PROXY_CERTS})")
    when = datetime.fromisoformat(expiration.replace("Z", "+00:00").replace("z", "+00:00"))
    return IssuedServerCertificate(leaf, tuple(certificates[1:]), when)
