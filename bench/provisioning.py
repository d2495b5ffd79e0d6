"""Time from daemon start to "the device has an identity and the agent runs", per way of getting
the identity, against a start from the cache measured in the same run; and the cloud requests of
each start.

The daemon (the source, or the program `--binary` unpacks) runs against a private dockerd with a
busybox agent, and the cloud peers of the tests (tests/peers/cloud.py: a DPS and a hub on
loopback HTTPS, in this process, counting every request they answer). Subjects, each `--runs`
times, the agent container removed before every start so each start creates it:

- **DPS symmetric key**: a fresh data dir and a registration enrolled just before;
- **DPS TPM attestation**: the same on a fresh swtpm (EK, SRK and storage key made on first use,
  then DPS's challenge activated and imported into the TPM);
- **warm cache** (the baseline): the symmetric-key gateway started again on its data dir;
- **warm cache, TPM**: the TPM gateway started again.

A start is over when the identity service reports "provisioned" or "from cache" and the agent's
container runs (the engine API says so; polled every 20 ms). The DPS answers Retry-After: 1 s, as
in the tests; the daemon's first status poll waits that long. Not a test: run it by hand.

    .venv/bin/python bench/provisioning.py [--runs 5] [--binary dist/sim/edgekeeper] [--json F]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import shutil
import socket
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from firmware.runtime.spec import MODULE_LABEL  # noqa: E402
from tests.peers.cloud import CloudPeers, start_cloud  # noqa: E402
from tests.peers.gateway import Gateway, new_gateway  # noqa: E402
from tests.peers.sim import Dockerd, Swtpm, busybox_rootfs  # noqa: E402
from tests.peers.waiting import wait_until  # noqa: E402

AGENT_IMAGE = "edgekeeper-bench/agent:1"
POLL_S = 0.02
ONLINE_TIMEOUT_S = 90
SETTLE_S = 2.0  # after online, requests a start still makes are counted too
SETTLED = ("provisioned", "from cache")
NO_NETWORK = {"NetworkMode": "none"}


@dataclass
class Subject:
    name: str
    seconds: list[float] = field(default_factory=list)
    identity_seconds: list[float] = field(default_factory=list)
    requests: list[int] = field(default_factory=list)

    @property
    def median_s(self) -> float:
        return statistics.median(self.seconds)

    @property
    def identity_median_s(self) -> float:
        return statistics.median(self.identity_seconds)


@dataclass(frozen=True)
class Start:
    """One start: seconds to online, seconds to the identity alone, cloud requests made."""

    seconds: float
    identity_seconds: float
    requests: int


class Bench:
    """The dockerd, the cloud and the gateways of one run."""

    def __init__(self, root: Path, dockerd: Dockerd, cloud: CloudPeers) -> None:
        self.root = root
        self.dockerd = dockerd
        self.cloud = cloud

    def gateway(self, provisioning_toml: str) -> Gateway:
        """A gateway (not started) with a fresh data dir provisioning with `provisioning_toml`."""
        return new_gateway(
            self.root,
            self.dockerd,
            AGENT_IMAGE,
            top_toml=f'trust_bundle_cert = "file://{self.cloud.ca_pem_path}"\ncloud_retries = 0\n',
            extra_toml=f'[logging]\nlevel = "warning"\n\n{provisioning_toml}',
            prefix="ekb",
        )

    def start(self, gw: Gateway) -> Start:
        """Start `gw` with no module container and wait until it is online."""
        self.dockerd.remove_containers(MODULE_LABEL)
        before = self.requests()
        started = time.monotonic()
        identity_at: list[float] = []

        def online() -> bool:
            if not identity_at and self.provisioning_state(gw) in SETTLED:
                identity_at.append(time.monotonic())
            return bool(identity_at) and self.agent_running(gw.agent)

        gw.start()
        wait_until(
            online,
            timeout_s=ONLINE_TIMEOUT_S,
            what=f"{gw.agent} online (log {gw.log_path})",
            interval_s=POLL_S,
        )
        elapsed = time.monotonic() - started
        time.sleep(SETTLE_S)
        made = self.requests() - before
        gw.stop()
        return Start(elapsed, identity_at[0] - started, made)

    def provisioning_state(self, gw: Gateway) -> str | None:
        services: list[dict[str, Any]] = gw.request("GET", "/daemon/status").json()["services"]
        identity: dict[str, Any] = next((s for s in services if s["name"] == "identity"), {})
        state = identity.get("detail", {}).get("provisioning", {}).get("state")
        return str(state) if state is not None else None

    def agent_running(self, agent: str) -> bool:
        """The engine lists a running container of `agent` (GET /containers/json, running only)."""
        filters = quote(json.dumps({"label": [f"{MODULE_LABEL}={agent}"]}))
        with socket.socket(socket.AF_UNIX) as conn:
            conn.settimeout(5)
            conn.connect(str(self.dockerd.socket))
            conn.sendall(
                f"GET /containers/json?filters={filters} HTTP/1.0\r\nHost: docker\r\n\r\n".encode()
            )
            answer = b""
            while chunk := conn.recv(65536):
                answer += chunk
        body = answer.split(b"\r\n\r\n", 1)[1]
        return bool(json.loads(body))

    def requests(self) -> int:
        return len(self.cloud.dps.requests) + sum(len(hub.requests) for hub in self.cloud.hubs)


def symmetric_key_toml(cloud: CloudPeers, registration_id: str, key: str) -> str:
    return (
        f'[provisioning]\nsource = "dps"\nglobal_endpoint = "{cloud.dps_endpoint}"\n'
        f'id_scope = "{cloud.id_scope}"\n\n[provisioning.attestation]\n'
        f'method = "symmetric_key"\nregistration_id = "{registration_id}"\n'
        f'symmetric_key = {{ value = "{key}" }}\n'
    )


def tpm_toml(cloud: CloudPeers, registration_id: str, tcti: str) -> str:
    return (
        f'[tpm]\ntcti = "{tcti}"\n\n'
        f'[provisioning]\nsource = "dps"\nglobal_endpoint = "{cloud.dps_endpoint}"\n'
        f'id_scope = "{cloud.id_scope}"\n\n[provisioning.attestation]\n'
        f'method = "tpm"\nregistration_id = "{registration_id}"\n'
    )


def run(bench: Bench, runs: int, progress: Callable[[str], None]) -> list[Subject]:
    symmetric, tpm = Subject("DPS symmetric key"), Subject("DPS TPM attestation, fresh swtpm")
    warm, warm_tpm = Subject("warm cache (baseline)"), Subject("warm cache, TPM")
    for index in range(runs):
        registration = f"bench-sym-{index}-{uuid.uuid4().hex[:6]}"
        key = base64.b64encode(secrets.token_bytes(32)).decode()
        bench.cloud.dps.enroll_symmetric(registration, key)
        gw = bench.gateway(symmetric_key_toml(bench.cloud, registration, key))
        record(symmetric, bench.start(gw), progress)
        record(warm, bench.start(gw), progress)

        swtpm = Swtpm(bench.root / f"swtpm-{index}")
        swtpm.start()
        try:
            registration = f"bench-tpm-{index}-{uuid.uuid4().hex[:6]}"
            bench.cloud.dps.enroll_tpm(registration, None)
            gw = bench.gateway(tpm_toml(bench.cloud, registration, swtpm.tcti))
            record(tpm, bench.start(gw), progress)
            record(warm_tpm, bench.start(gw), progress)
        finally:
            swtpm.stop()
    return [symmetric, tpm, warm, warm_tpm]


def record(subject: Subject, start: Start, progress: Callable[[str], None]) -> None:
    subject.seconds.append(start.seconds)
    subject.identity_seconds.append(start.identity_seconds)
    subject.requests.append(start.requests)
    progress(
        f"{subject.name}: {start.seconds:.3f} s (identity {start.identity_seconds:.3f} s), "
        f"{start.requests} cloud requests"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--binary", type=Path, help="a built edgekeeper (default: the source under this python)"
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.binary is not None:
        os.environ["EDGEKEEPER_BINARY"] = str(args.binary.resolve())  # tests/peers/program.py

    root = Path(tempfile.mkdtemp(prefix="ekbprov-", dir="/tmp"))
    dockerd = Dockerd(root / "docker")
    try:
        dockerd.start()
        dockerd.import_image(busybox_rootfs(root / "agent-rootfs"), AGENT_IMAGE)
        (root / "cloud").mkdir()
        with start_cloud(root / "cloud") as cloud:
            subjects = run(
                Bench(root, dockerd, cloud), args.runs, lambda line: print(line, file=sys.stderr)
            )
    finally:
        dockerd.remove_containers(MODULE_LABEL)
        dockerd.stop()
        shutil.rmtree(root, ignore_errors=True)

    baseline = subjects[2].median_s
    subject_label = "daemon: " + (
        str(args.binary) if args.binary else "source (python -m firmware)"
    )
    print(f"start to identity + agent running, {args.runs} runs each; {subject_label}")
    print(
        f"{'subject':34} {'median s':>9} {'min s':>7} {'max s':>7} {'x warm':>7} "
        f"{'identity s':>10} {'requests':>9}"
    )
    for subject in subjects:
        requests = sorted(set(subject.requests))
        shown = str(requests[0]) if len(requests) == 1 else f"{requests[0]}-{requests[-1]}"
        print(
            f"{subject.name:34} {subject.median_s:9.3f} {min(subject.seconds):7.3f} "
            f"{max(subject.seconds):7.3f} {subject.median_s / baseline:7.2f} "
            f"{subject.identity_median_s:10.3f} {shown:>9}"
        )
    print("x warm = median / median of the warm-cache start (symmetric key) of this run")
    print("identity s = median time until the identity service had the identity (no agent yet)")
    print("requests = DPS + hub requests per start (until online and 2 s after)")
    if args.json:
        document = {
            "daemon": subject_label,
            "runs": args.runs,
            "subjects": [
                {
                    **asdict(s),
                    "median_s": s.median_s,
                    "identity_median_s": s.identity_median_s,
                    "ratio_to_warm": s.median_s / baseline,
                }
                for s in subjects
            ],
        }
        args.json.write_text(json.dumps(document, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
