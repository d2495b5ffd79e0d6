"""What a device sends the cloud peers, made by hand from the public docs for the peers' own
tests: SAS tokens (`sas_token`) and one HTTPS request per call over `http.client` (`send`)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

LIFETIME_S = 3600


def sas_token(
    resource: str,
    key_b64: str,
    *,
    key_name: str | None = None,
    encode_slash: bool = True,
    expiry: int | None = None,
) -> str:
    """`SharedAccessSignature sr=..&sig=..&se=..[&skn=..]`: HMAC-SHA256 with the decoded key
    over the url-encoded lower-case resource, a newline and the expiry."""
    se = expiry if expiry is not None else int(time.time()) + LIFETIME_S
    sr = quote(resource.lower(), safe="" if encode_slash else "/")
    digest = hmac.new(base64.b64decode(key_b64), f"{sr}\n{se}".encode(), hashlib.sha256).digest()
    sig = quote(base64.b64encode(digest).decode(), safe="")
    token = f"SharedAccessSignature sr={sr}&sig={sig}&se={se}"
    return f"{token}&skn={key_name}" if key_name else token


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> object:
        return json.loads(self.body)


def send(
    port: int,
    ca_pem: Path,
    method: str,
    target: str,
    *,
    body: object = None,
    headers: dict[str, str] | None = None,
    client_cert: tuple[Path, Path] | None = None,
    timeout_s: float = 5,
) -> Reply:
    """One request to https://127.0.0.1:`port`, trusting `ca_pem`; `body` is sent as JSON."""
    context = ssl.create_default_context(cafile=str(ca_pem))
    if client_cert is not None:
        context.load_cert_chain(*client_cert)
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=timeout_s)
    try:
        payload = None if body is None else json.dumps(body).encode()
        sent = {"Content-Type": "application/json", **(headers or {})}
        connection.request(method, target, body=payload, headers=sent)
        response = connection.getresponse()
        return Reply(
            response.status,
            {name.lower(): value for name, value in response.getheaders()},
            response.read(),
        )
    finally:
        connection.close()
