"""The cloud for tests and the sim board: a DPS and its IoT hubs on loopback HTTPS, with the test
CA they share, in this process (`start_cloud`, for pytest) or as a program for the sim board:

    python -m tests.peers.cloud --state-dir DIR --config FILE

FILE is JSON: `{"id_scope": "0ne...", "individual": {regid: b64key}, "groups": {name: b64key},
"tpm": {regid: "trust_first" | b64 EK public}, "x509_ca": true (enroll the test CA as a group),
"hubs": 2, "assigning_delay_s": 0, "retry_after_s": 1, "dps_port": 0, "hub_ports": []}`, every
key optional. The program keeps the CA, the hubs' registries and the learnt EKs in DIR across
restarts, writes `DIR/peers.json` `{"dps", "hubs", "ca", "id_scope", "pid"}` (atomically) once
listening, and stops cleanly on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import signal
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import TracebackType

from tests.peers.cloud_ca import CA_CERT_FILE, CertificateAuthority
from tests.peers.dps_peer import DpsPeer
from tests.peers.hub_peer import HubPeer

DEFAULT_ID_SCOPE = "0ne00000001"
PEERS_FILE = "peers.json"


@dataclass(frozen=True)
class CloudPeers:
    """A running DPS and its hubs; `stop()` (or leaving the `with`) shuts them down."""

    ca: CertificateAuthority
    ca_pem_path: Path
    dps: DpsPeer
    hubs: list[HubPeer]

    @property
    def dps_endpoint(self) -> str:
        return f"https://127.0.0.1:{self.dps.port}"

    @property
    def id_scope(self) -> str:
        return self.dps.id_scope

    def describe(self) -> dict[str, object]:
        """What peers.json holds."""
        return {
            "dps": self.dps_endpoint,
            "hubs": [hub.host for hub in self.hubs],
            "ca": str(self.ca_pem_path),
            "id_scope": self.id_scope,
            "pid": os.getpid(),
        }

    def stop(self) -> None:
        for peer in (self.dps, *self.hubs):
            peer.stop()

    def __enter__(self) -> CloudPeers:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def start_cloud(
    state_dir: Path,
    *,
    id_scope: str = DEFAULT_ID_SCOPE,
    hub_count: int = 2,
    persist: bool = False,
    dps_port: int = 0,
    hub_ports: tuple[int, ...] = (),
) -> CloudPeers:
    """Start a DPS and `hub_count` hubs trusting one test CA saved as `state_dir/ca.pem`. With
    `persist`, a CA already in `state_dir` is reused and the registries are kept there."""
    if persist and (state_dir / CA_CERT_FILE).exists():
        ca = CertificateAuthority.load(state_dir)
        ca_pem_path = state_dir / CA_CERT_FILE
    else:
        ca = CertificateAuthority.generate()
        ca_pem_path = ca.save(state_dir)
    server_cert = ca.issue_server_cert()
    ports = list(hub_ports) + [0] * (hub_count - len(hub_ports))
    hubs = [
        HubPeer(
            server_cert,
            [ca.certificate],
            port,
            state_dir / f"hub-{index}.json" if persist else None,
        )
        for index, port in enumerate(ports[:hub_count])
    ]
    dps = DpsPeer(
        server_cert,
        [ca.certificate],
        hubs,
        id_scope=id_scope,
        port=dps_port,
        state_file=state_dir / "dps.json" if persist else None,
    )
    for peer in (*hubs, dps):
        peer.start()
    return CloudPeers(ca, ca_pem_path, dps, hubs)


@dataclass(frozen=True)
class CloudConfig:
    """The program's --config file."""

    id_scope: str = DEFAULT_ID_SCOPE
    individual: dict[str, str] = field(default_factory=dict)
    groups: dict[str, str] = field(default_factory=dict)
    tpm: dict[str, str] = field(default_factory=dict)
    x509_ca: bool = False
    hubs: int = 2
    assigning_delay_s: float = 0.0
    retry_after_s: int = 1
    dps_port: int = 0
    hub_ports: tuple[int, ...] = ()

    @classmethod
    def read(cls, path: Path) -> CloudConfig:
        raw = json.loads(path.read_text())
        unknown = set(raw) - {f.name for f in fields(cls)}
        if unknown:
            raise SystemExit(f"{path}: unknown keys {sorted(unknown)}")
        return cls(**{**raw, "hub_ports": tuple(raw.get("hub_ports", ()))})

    def enroll(self, cloud: CloudPeers) -> None:
        dps = cloud.dps
        dps.assigning_delay_s = self.assigning_delay_s
        dps.retry_after_s = self.retry_after_s
        for registration_id, key in self.individual.items():
            dps.enroll_symmetric(registration_id, key)
        for group_id, key in self.groups.items():
            dps.enroll_group(group_id, key)
        for registration_id, ek in self.tpm.items():
            known = None if ek == "trust_first" else base64.b64decode(ek, validate=True)
            dps.enroll_tpm(registration_id, known)
        if self.x509_ca:
            dps.enroll_x509_ca(cloud.ca.certificate)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="the cloud peers of the sim board")
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--config", type=Path, required=True)
    arguments = parser.parse_args(argv)
    config = CloudConfig.read(arguments.config)
    state_dir: Path = arguments.state_dir
    state_dir.mkdir(parents=True, exist_ok=True)
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)  # before any thread: all inherit it
    cloud = start_cloud(
        state_dir,
        id_scope=config.id_scope,
        hub_count=config.hubs,
        persist=True,
        dps_port=config.dps_port,
        hub_ports=config.hub_ports,
    )
    with cloud:
        config.enroll(cloud)
        temporary = state_dir / (PEERS_FILE + ".tmp")
        temporary.write_text(json.dumps(cloud.describe()))
        os.replace(temporary, state_dir / PEERS_FILE)
        signal.sigwait(stop_signals)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
