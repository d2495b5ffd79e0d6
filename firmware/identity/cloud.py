"""The device's calls to DPS and the hub: sends the sans-IO requests of `firmware.identity.dps`
and `firmware.identity.hub` over `firmware.http`, retrying briefly, and runs a DPS registration
and the hub's module identity calls to the end.

`CloudCalls.send` makes one call: the endpoint comes from the caller's factory (TLS, and the
client certificate or hardware key, are the factory's business), each attempt is bounded by
`deadlines`, and a network failure, 408, 429 or 5xx is tried again `retries` times after an
exponential back-off with jitter (1 s, then 2 s, each up to half again at random), or after the
server's Retry-After when it asks for longer. A Retry-After over `RETRY_AFTER_LIMIT_S` ends the
call at once: waiting minutes is the caller's back-off (Azure's identity service waits 60, 120,
180, then 300 s on 429), told by `CloudUnreachable.retry_after_s`. A network failure left after
the retries is `CloudUnreachable` naming the host and what to check; a transient answer left
after them is returned, and reading it raises `CloudUnreachable` with the server's advice.

Requests are sent as they were made on every attempt, so a token must outlive the retries
(`sas.TOKEN_LIFETIME_S` does).
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
import re
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar
from urllib.parse import urlsplit

from firmware import __version__
from firmware.errors import ConfigError, EdgekeeperError
from firmware.http.client import Answer, Deadlines, Endpoint, HttpClient
from firmware.http.errors import ExchangeFailed, Failure
from firmware.identity import hub, rest, sas
from firmware.identity.dps import Assigned, Challenge, DpsRegistration, Poll
from firmware.identity.errors import CloudUnreachable
from firmware.identity.hub import HubCall, HubModule, ModuleExists
from firmware.identity.rest import CloudRequest
from firmware.logs import fields, get_logger

log = get_logger("identity")

CloudEndpoint = Callable[[str, int], Endpoint]
"""Makes the endpoint of a cloud service from its host and port (TLS set up by the caller)."""
Authorize = Callable[[str], Awaitable[str | None]]
"""The Authorization header for an audience (`sas`), or None when TLS carries the identity."""
ImportChallenge = Callable[[bytes], Awaitable[None]]
"""Imports a DPS TPM authentication key blob into the TPM."""

DEFAULT_PORT = 443
DEFAULT_RETRIES = 2
BACKOFF_FIRST_S = 1.0
BACKOFF_JITTER = 0.5
#: A Retry-After longer than this is not waited for within a call.
RETRY_AFTER_LIMIT_S = 10.0
USER_AGENT = f"edgekeeper/{__version__}"

_HOST_FORMS = "host, host:port or https://host[:port]"
_NAME = re.compile(r"[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?")
_NOT_RETRIED = (Failure.TLS, Failure.MALFORMED, Failure.TOO_LARGE)
_T = TypeVar("_T")


def parse_host(text: str) -> tuple[str, int]:
    """`(host, port)` of "host", "host:port" or "https://host[:port][/]" (port 443 unless
    given; an IPv6 address in brackets); `ConfigError` naming `text` otherwise."""
    candidate = text.strip()
    url = candidate if "://" in candidate else f"https://{candidate}"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise _not_a_host(text) from None
    host = parts.hostname or ""
    if (
        parts.scheme != "https"
        or not (_NAME.fullmatch(host) or _is_ipv6(host))
        or port == 0
        or parts.username is not None
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or "#" in url
        or "?" in url
    ):
        raise _not_a_host(text)
    return host, port or DEFAULT_PORT


def _is_ipv6(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).version == 6
    except ValueError:
        return False


def _not_a_host(text: str) -> ConfigError:
    return ConfigError(f"{text!r} is not a cloud service's host", hint=f"write it as {_HOST_FORMS}")


class CloudCalls:
    """Sends requests to DPS and hubs (see the module docstring for retries).

    `endpoint_factory(host, port)` makes the endpoint for each call; `sleep` and `rng` (a float
    in [0, 1)) and `monotonic` are injectable for tests.
    """

    def __init__(
        self,
        endpoint_factory: CloudEndpoint,
        *,
        deadlines: Deadlines,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: Callable[[], float] = random.random,
        retries: int = DEFAULT_RETRIES,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._endpoint_factory = endpoint_factory
        self._deadlines = deadlines
        self._sleep = sleep
        self._rng = rng
        self._retries = retries
        self._monotonic = monotonic

    async def send(self, host_text: str, request: CloudRequest) -> Answer:
        """The answer to `request` sent to `host_text` (see `parse_host`), after the retries;
        `CloudUnreachable` (or `CloudAnswerMalformed` for a broken HTTP answer) when none came."""
        host, port = parse_host(host_text)
        client = HttpClient(
            self._endpoint_factory(host, port),
            deadlines=self._deadlines,
            headers=[("host", _host_header(host, port)), ("user-agent", USER_AGENT)],
        )
        attempts, attempt = self._retries + 1, 1
        while True:
            try:
                answer = await client.request(
                    request.method, request.target, headers=request.headers, body=request.body
                )
            except ExchangeFailed as failure:
                if attempt == attempts or failure.failure in _NOT_RETRIED:
                    raise _failed(failure, host, port, attempt) from failure
                wait = self._backoff(attempt)
                why = failure.message
            else:
                if not rest.is_transient(answer.status) or attempt == attempts:
                    return answer
                advice = rest.retry_after_s(answer.headers)
                if advice is not None and advice > RETRY_AFTER_LIMIT_S:
                    return answer
                wait = max(self._backoff(attempt), advice or 0.0)
                why = f"{host}:{port} answered {answer.status}"
            log.info(
                "cloud call to retry: %s",
                why,
                extra=fields(host=host, attempt=attempt, wait_s=round(wait, 2)),
            )
            await self._sleep(wait)
            attempt += 1

    def _backoff(self, attempt: int) -> float:
        step = BACKOFF_FIRST_S * 2.0 ** (attempt - 1)
        return step * (1 + BACKOFF_JITTER * self._rng())

    async def register(
        self,
        dps_host: str,
        registration: DpsRegistration,
        authorize: Authorize,
        import_challenge: ImportChallenge | None,
        poll_limit_s: float,
    ) -> Assigned:
        """Run `registration` with DPS at `dps_host` until DPS assigns the device.

        The first register carries a token, except with TPM attestation: then DPS's challenge
        is imported with `import_challenge` and the register sent again with a token the TPM
        signs (as is a key the assignment carries). Each request gets a fresh token. Polls wait
        what DPS advises, within [1, 30] s (`dps.POLL_DELAY_BOUNDS_S`); when the next wait would
        end more than `poll_limit_s` after the start, `CloudUnreachable`. Raises what
        `DpsRegistration.receive` and `send` raise.
        """
        if registration.tpm is not None and import_challenge is None:
            raise ValueError("TPM attestation needs import_challenge")
        give_up_at = self._monotonic() + poll_limit_s
        audience = registration.audience
        first = None if registration.tpm is not None else await authorize(audience)
        request = registration.register(first)
        log.info(
            "DPS registration started",
            extra=fields(dps=dps_host, registration_id=registration.registration_id),
        )
        while True:
            answer = await self.send(dps_host, request)
            event = registration.receive(answer.status, answer.headers, answer.body)
            if isinstance(event, Assigned):
                if event.authentication_key is not None and import_challenge is not None:
                    await import_challenge(event.authentication_key)
                log.info(
                    "DPS assigned the device",
                    extra=fields(hub=event.hub, device=event.device_id, substatus=event.substatus),
                )
                return event
            if isinstance(event, Challenge):
                assert import_challenge is not None  # a challenge comes with TPM only
                await import_challenge(event.authentication_key)
                request = registration.register(await authorize(audience))
                continue
            wait = event.after_s if isinstance(event, Poll) else BACKOFF_FIRST_S
            if self._monotonic() + wait > give_up_at:
                raise CloudUnreachable(
                    f"DPS did not finish registration {registration.registration_id!r} within "
                    f"{poll_limit_s:g} s",
                    hint="DPS or its allocation webhook is slow; it is tried again later",
                )
            await self._sleep(wait)
            authorization = await authorize(audience)
            if isinstance(event, Poll):
                request = registration.poll(event.operation_id, authorization)
            else:
                log.info("DPS registration again: %s", event.reason)
                request = registration.register(authorization)


class HubIdentities:
    """The module identities of `device_id` on the hub reached at `hub_host`.

    Tokens are for the hub named by `hub_host` (its host, and its port unless 443), or for
    `hub_name` when `hub_host` is another host (a parent gateway in a nested setup);
    `authorize` gives each call its Authorization header.
    """

    def __init__(
        self,
        calls: CloudCalls,
        hub_host: str,
        device_id: str,
        authorize: Authorize,
        *,
        hub_name: str | None = None,
    ) -> None:
        self._calls = calls
        self._host = hub_host
        self.device_id = device_id
        self._authorize = authorize
        self._audience = sas.audience_device(
            hub_name or _host_header(*parse_host(hub_host)), device_id
        )

    async def list(self) -> tuple[HubModule, ...]:
        return await self._call(lambda auth: hub.list_modules(self.device_id, auth))

    async def get(self, module_id: str) -> HubModule | None:
        """The module identity, None when the hub has none."""
        return await self._call(lambda auth: hub.get_module(self.device_id, module_id, auth))

    async def create(self, module_id: str) -> HubModule:
        """The new module identity; the one the hub has when it exists already."""
        made = await self._call(lambda auth: hub.create_module(self.device_id, module_id, auth))
        if not isinstance(made, ModuleExists):
            return made
        existing = await self.get(module_id)
        if existing is None:
            raise rest.malformed(
                f"the hub said module {module_id!r} of device {self.device_id!r} exists, "
                "then that it does not"
            )
        return existing

    async def set_keys(
        self, module_id: str, primary: bytes, secondary: bytes, managed_by: str | None
    ) -> HubModule:
        """Give the module identity these SAS keys (raw bytes), and `managed_by` when given."""
        return await self._call(
            lambda auth: hub.set_module_keys(
                self.device_id, module_id, primary, secondary, managed_by, auth
            )
        )

    async def delete(self, module_id: str) -> bool:
        """Delete the module identity: True when deleted, False when the hub had none."""
        return await self._call(lambda auth: hub.delete_module(self.device_id, module_id, auth))

    async def _call(self, make: Callable[[str | None], HubCall[_T]]) -> _T:
        call = make(await self._authorize(self._audience))
        answer = await self._calls.send(self._host, call.request)
        return call.receive(answer.status, answer.headers, answer.body)


def _host_header(host: str, port: int) -> str:
    name = f"[{host}]" if ":" in host else host
    return name if port == DEFAULT_PORT else f"{name}:{port}"


def _failed(failure: ExchangeFailed, host: str, port: int, attempts: int) -> EdgekeeperError:
    """The error for a call that got no answer: `failure` on the last of `attempts`."""
    tried = f" (attempt {attempts})" if attempts > 1 else ""
    if failure.failure in (Failure.MALFORMED, Failure.TOO_LARGE):
        return rest.malformed(f"{failure.message}{tried}")
    if failure.failure is Failure.TLS:
        hint = (
            "check the device clock (certificates look expired or not yet valid when it is "
            "wrong), the trusted CA certificates and the device's certificate or key, and that "
            "no proxy intercepts TLS"
        )
    elif failure.failure is Failure.MISSING:
        hint = f"check the host name {host!r} and DNS (/etc/resolv.conf)"
    else:
        hint = (
            f"check the network connection, the firewall (outbound TCP {port}) and any proxy "
            "on the way"
        )
    return CloudUnreachable(f"{failure.message}{tried}", hint=hint)
