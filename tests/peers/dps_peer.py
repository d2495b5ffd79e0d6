"""A Device Provisioning Service for tests: registration, operation polling and attestation as
the public DPS device REST API does them, assigning devices to `HubPeer`s.

`PUT /{idScope}/registrations/{regId}/register` answers 202 `{"operationId","status":
"assigning"}` with Retry-After; `GET .../operations/{operationId}` answers 202 assigning until
`assigning_delay_s` has passed, then 200 with the outcome (assigned, failed or disabled). Both
need the device's credential: a SAS token (`sr={idScope}/registrations/{regId}`,
`skn=registration`) signed with an individual key, a group-derived key or the TPM challenge's
key, or an X.509 client certificate whose CN is the registration id (enrolled by thumbprint, or
issued by an enrolled CA). A TPM device's first register (no Authorization, `tpm` body) gets 401
with the challenge (`authenticationKey`, `keyName`). Errors carry DPS's body `{"errorCode",
"trackingId","message","timestampUtc"}` and `x-ms-error-code`. The assigned hub gets the device
with the credential it proved. With a `state_file`, TPM EKs learnt on first use and assignments
survive a restart (the sim board).
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
import os
import secrets
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from tests.peers.cloud_ca import (
    IssuedCert,
    common_name,
    issued_by,
    thumbprint_sha1,
    thumbprint_sha256,
)
from tests.peers.cloud_https import Answer, Call, HttpsPeer
from tests.peers.hub_peer import DeviceCredential, HubPeer
from tests.peers.sas_token import derive_device_key, parse_sas, sas_valid

API_VERSIONS = frozenset({"2019-03-31", "2021-06-01", "2021-10-01"})
KEY_NAME = "registration"
TPM_KEY_BYTES = 32
ERROR_CODES = {400: 400004, 401: 401002, 404: 404001, 429: 429001, 500: 500001, 503: 503001}
NO_HUB_ERROR = 400208
MOVE_SUBSTATUSES = frozenset(
    {"deviceDataMigrated", "deviceDataReset", "reprovisionedToInitialAssignment"}
)
REJECTIONS = frozenset({"disabled", "failed"})


@dataclass
class _Operation:
    operation_id: str
    registration_id: str
    started: float
    created: str
    credential: DeviceCredential
    outcome: dict[str, object] | None = None


class DpsError(Exception):
    def __init__(self, status: int, message: str, extra: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.extra = extra


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class DpsPeer(HttpsPeer):
    """One DPS instance with ID scope `id_scope`, assigning to `hubs[0]` unless moved."""

    def __init__(
        self,
        cert: IssuedCert,
        trust: list[x509.Certificate],
        hubs: list[HubPeer],
        *,
        id_scope: str = "0ne00000001",
        port: int = 0,
        state_file: Path | None = None,
    ) -> None:
        super().__init__(cert, trust, port)
        self.id_scope = id_scope
        self.hubs = hubs
        self.assigning_delay_s = 0.0
        self.retry_after_s = 1
        self._state_file = state_file
        self._individual: dict[str, str] = {}
        self._groups: dict[str, str] = {}
        self._thumbprints: dict[str, str] = {}
        self._cas: list[x509.Certificate] = []
        self._tpm_eks: dict[str, bytes | None] = {}
        self._tpm_keys: dict[str, bytes] = {}
        self._assigned: dict[str, str] = {}
        self._moves: dict[str, tuple[str, str]] = {}
        self._rejections: dict[str, str] = {}
        self._unauthorized: set[str] = set()
        self._operations: dict[str, _Operation] = {}
        self.payloads: dict[str, object] = {}
        if state_file is not None and state_file.exists():
            state = json.loads(state_file.read_text())
            self._tpm_eks = {r: base64.b64decode(ek) for r, ek in state["tpm_eks"].items()}
            self._assigned = state["assigned"]

    # enrollments

    def enroll_symmetric(self, registration_id: str, key_b64: str) -> None:
        with self._lock:
            self._individual[registration_id] = key_b64

    def enroll_group(self, group_id: str, group_key_b64: str) -> None:
        """A symmetric-key group: any registration id signing with its derived key."""
        with self._lock:
            self._groups[group_id] = group_key_b64

    def enroll_x509(self, registration_id: str, certificate: x509.Certificate) -> None:
        """An individual X.509 enrollment by the device certificate's thumbprint."""
        with self._lock:
            self._thumbprints[registration_id] = thumbprint_sha1(certificate)
            self._trust_everywhere(certificate)

    def enroll_x509_ca(self, ca: x509.Certificate) -> None:
        """An X.509 group: devices whose certificate `ca` issued, CN = registration id."""
        with self._lock:
            self._cas.append(ca)
            self._trust_everywhere(ca)

    def enroll_tpm(self, registration_id: str, endorsement_key: bytes | None) -> None:
        """A TPM enrollment by marshalled EK public; None trusts the first EK seen (an EK
        already learnt that way, e.g. before a restart, is kept)."""
        with self._lock:
            if endorsement_key is not None or self._tpm_eks.get(registration_id) is None:
                self._tpm_eks[registration_id] = endorsement_key
            self._save()

    def tpm_key(self, registration_id: str) -> bytes | None:
        """The HMAC key of the latest TPM challenge to `registration_id`."""
        with self._lock:
            return self._tpm_keys.get(registration_id)

    # fault injection

    def reject(self, registration_id: str, status: str = "disabled") -> None:
        """The registration's next operations end `disabled` or `failed`."""
        if status not in REJECTIONS:
            raise ValueError(f"status must be one of {sorted(REJECTIONS)}")
        with self._lock:
            self._rejections[registration_id] = status

    def accept(self, registration_id: str) -> None:
        """Undo `reject` and `unauthorized` for the registration."""
        with self._lock:
            self._rejections.pop(registration_id, None)
            self._unauthorized.discard(registration_id)

    def unauthorized(self, registration_id: str) -> None:
        """The registration's requests get 401 whatever credential they carry."""
        with self._lock:
            self._unauthorized.add(registration_id)

    def move_device(
        self, registration_id: str, to_hub: HubPeer, substatus: str = "deviceDataMigrated"
    ) -> None:
        """Assign the registration to `to_hub` next time, with `substatus`."""
        if substatus not in MOVE_SUBSTATUSES:
            raise ValueError(f"substatus must be one of {sorted(MOVE_SUBSTATUSES)}")
        with self._lock:
            self._moves[registration_id] = (to_hub.host, substatus)

    def assigned_hub(self, registration_id: str) -> str | None:
        with self._lock:
            return self._assigned.get(registration_id)

    # the REST API

    def error(self, status: int, message: str, extra: dict[str, object] | None = None) -> Answer:
        code = ERROR_CODES.get(status, status * 1000)
        body: dict[str, object] = {
            "errorCode": code,
            "trackingId": str(uuid.uuid4()),
            "message": message,
            "timestampUtc": _now(),
        }
        return Answer.json(status, {**body, **(extra or {})}, (("x-ms-error-code", str(code)),))

    def answer(self, call: Call) -> Answer:
        try:
            version = call.query.get("api-version")
            if version not in API_VERSIONS:
                raise DpsError(400, f"api-version {version!r} is not supported")
            match (call.method, call.segments):
                case ("PUT", (self.id_scope, "registrations", registration_id, "register")):
                    return self._register(call, registration_id)
                case ("GET", (self.id_scope, "registrations", registration_id, "operations", op)):
                    return self._status(call, registration_id, op)
            raise DpsError(404, f"no route for {call.method} {call.path}")
        except DpsError as failure:
            if failure.extra is not None:
                return Answer.json(failure.status, failure.extra)
            return self.error(failure.status, str(failure))

    def _register(self, call: Call, registration_id: str) -> Answer:
        try:
            body = json.loads(call.body)
        except ValueError:
            raise DpsError(400, "the body is not JSON") from None
        if not isinstance(body, dict) or body.get("registrationId") != registration_id:
            raise DpsError(400, "registrationId in the body does not match the path")
        credential = self._authenticate(call, registration_id, body.get("tpm"))
        operation = _Operation(
            operation_id=f"4.{secrets.token_hex(8)}.{uuid.uuid4()}",
            registration_id=registration_id,
            started=time.monotonic(),
            created=_now(),
            credential=credential,
        )
        with self._lock:
            self._operations[operation.operation_id] = operation
            if "payload" in body:
                self.payloads[registration_id] = body["payload"]
        return self._assigning(operation)

    def _status(self, call: Call, registration_id: str, operation_id: str) -> Answer:
        with self._lock:
            operation = self._operations.get(operation_id)
        if operation is None or operation.registration_id != registration_id:
            raise DpsError(404, f"operation {operation_id} not found")
        self._authenticate(call, registration_id, None)
        if time.monotonic() - operation.started < self.assigning_delay_s:
            return self._assigning(operation)
        with self._lock:
            if operation.outcome is None:
                operation.outcome = self._conclude(operation)
            return Answer.json(200, operation.outcome)

    def _assigning(self, operation: _Operation) -> Answer:
        return Answer.json(
            202,
            {"operationId": operation.operation_id, "status": "assigning"},
            (("Retry-After", str(self.retry_after_s)),),
        )

    def _conclude(self, operation: _Operation) -> dict[str, object]:
        registration_id = operation.registration_id
        state: dict[str, object] = {
            "registrationId": registration_id,
            "createdDateTimeUtc": operation.created,
            "lastUpdatedDateTimeUtc": _now(),
            "etag": base64.b64encode(secrets.token_bytes(9)).decode(),
        }
        rejection = self._rejections.get(registration_id)
        if rejection == "failed":
            state |= {"status": "failed", "errorCode": NO_HUB_ERROR, "errorMessage": "no hub"}
        elif rejection == "disabled":
            state |= {"status": "disabled"}
        else:
            hub, substatus = self._choose_hub(registration_id)
            hub.add_device(registration_id, operation.credential)
            self._assigned[registration_id] = hub.host
            self._save()
            state |= {
                "assignedHub": hub.host,
                "deviceId": registration_id,
                "status": "assigned",
                "substatus": substatus,
            }
        return {
            "operationId": operation.operation_id,
            "status": state["status"],
            "registrationState": state,
        }

    def _choose_hub(self, registration_id: str) -> tuple[HubPeer, str]:
        by_host = {hub.host: hub for hub in self.hubs}
        previous = self._assigned.get(registration_id)
        move = self._moves.pop(registration_id, None)
        if move is not None and move[0] != previous:
            return by_host[move[0]], move[1]
        return by_host.get(previous or "", self.hubs[0]), "initialAssignment"

    # attestation

    def _authenticate(self, call: Call, registration_id: str, tpm: object) -> DeviceCredential:
        with self._lock:
            if registration_id in self._unauthorized:
                raise DpsError(401, f"registration {registration_id} is not authorised")
        header = call.headers.get("authorization")
        if header is not None:
            return self._by_sas(header, registration_id)
        if call.client_cert is not None:
            return self._by_certificate(call.client_cert, registration_id)
        if isinstance(tpm, dict):
            self._challenge(registration_id, tpm)
        raise DpsError(401, "no credential")

    def _by_sas(self, header: str, registration_id: str) -> DeviceCredential:
        token = parse_sas(header)
        if token is None:
            raise DpsError(401, "the Authorization header is not a SAS token")
        with self._lock:
            keys = [self._individual.get(registration_id)]
            tpm_key = self._tpm_keys.get(registration_id)
            keys.append(base64.b64encode(tpm_key).decode() if tpm_key else None)
            keys += [derive_device_key(group, registration_id) for group in self._groups.values()]
        resource = f"{self.id_scope}/registrations/{registration_id}"
        for key in keys:
            if key is not None and sas_valid(
                token, key_b64=key, resource=resource, key_name=KEY_NAME
            ):
                return DeviceCredential(symmetric_key=key)
        raise DpsError(401, "the SAS token is not valid for this registration")

    def _by_certificate(self, cert: x509.Certificate, registration_id: str) -> DeviceCredential:
        if common_name(cert) != registration_id:
            raise DpsError(401, "the certificate's CN is not the registration id")
        with self._lock:
            thumbprint = self._thumbprints.get(registration_id)
            cas = list(self._cas)
        if thumbprint is not None and thumbprint == thumbprint_sha1(cert):
            return DeviceCredential(x509_thumbprint=thumbprint_sha256(cert))
        for ca in cas:
            if issued_by(cert, ca):
                return DeviceCredential(x509_ca=ca)
        raise DpsError(401, "the certificate is not enrolled")

    def _challenge(self, registration_id: str, tpm: dict[str, object]) -> None:
        try:
            endorsement_key = base64.b64decode(str(tpm["endorsementKey"]), validate=True)
            storage_root_key = base64.b64decode(str(tpm["storageRootKey"]), validate=True)
        except (KeyError, binascii.Error):
            raise DpsError(400, "tpm needs base64 endorsementKey and storageRootKey") from None
        with self._lock:
            if registration_id not in self._tpm_eks:
                raise DpsError(401, f"no TPM enrollment for {registration_id}")
            enrolled = self._tpm_eks[registration_id]
            if enrolled is None:
                self._tpm_eks[registration_id] = enrolled = endorsement_key
                self._save()
            if enrolled != endorsement_key:
                raise DpsError(401, "the endorsement key is not the enrolled one")
            hmac_key = secrets.token_bytes(TPM_KEY_BYTES)
            self._tpm_keys[registration_id] = hmac_key
        # H3's module (TPM2 credential and duplication blobs), imported on the TPM path only
        from tests.peers.tpm_challenge import make_challenge

        blob = make_challenge(endorsement_key, storage_root_key, hmac_key)
        raise DpsError(
            401,
            "TPM challenge",
            {"authenticationKey": base64.b64encode(blob).decode(), "keyName": KEY_NAME},
        )

    def _trust_everywhere(self, certificate: x509.Certificate) -> None:
        self.trust(certificate)
        for hub in self.hubs:
            hub.trust(certificate)

    def _save(self) -> None:
        if self._state_file is None:
            return
        state = {
            "tpm_eks": {r: base64.b64encode(ek).decode() for r, ek in self._tpm_eks.items() if ek},
            "assigned": self._assigned,
        }
        temporary = self._state_file.with_suffix(".tmp")
        temporary.write_text(json.dumps(state))
        os.replace(temporary, self._state_file)
