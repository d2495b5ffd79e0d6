"""Workload API sign throughput and latency over a module socket, against the same HMAC in-process.

A server process runs the real stack (the HTTP server on a module socket `workload:bench`, the
router, `WorkloadApi`, module identities, the key service with its file backend and the bounded
executor); this process is the client. Measured, each for `--seconds`:

- `POST /modules/bench/genid/{genid}/sign` on one keep-alive connection, one request at a time;
- the same with `--clients` (16) connections at once;
- baselines in this run: `hmac.digest` in-process (the work itself), and `KeyService.sign` with
  the derived key in-process (the key service without HTTP).

Reports requests/s, p50/p99 latency and the ratio in-process HMAC rate / API rate (the API's
overhead). The server's rate limit is lifted for the bench (the product default is per socket).

    .venv/bin/python bench/workload.py [--seconds 5] [--clients 16] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hmac
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

MODULE = "bench"
DATA = b"myhub.azure-devices.net%2Fdevices%2Fgw%2Fmodules%2Fbench\n1900000000"
API_VERSION = "2020-10-10"


@dataclass
class Figures:
    subject: str
    requests: int
    seconds: float
    per_second: float
    p50_ms: float | None = None
    p99_ms: float | None = None
    errors: int = 0
    server_cpu_s: float | None = None  # CPU time of the server process (all threads)

    @property
    def per_cpu_second(self) -> float | None:
        """Requests per second of server CPU: the rate one fully busy core would serve."""
        if not self.server_cpu_s:
            return None
        return round(self.requests / self.server_cpu_s, 1)


# --- the server process ---------------------------------------------------------------------


async def serve(root: Path) -> None:
    from firmware.api.router import Router
    from firmware.api.workload.access import WorkloadAccess
    from firmware.api.workload.ratelimit import ModuleBudgets, RateLimit, SocketRateLimits
    from firmware.api.workload.routes import WorkloadApi
    from firmware.api.workload.sockets import ModuleSockets
    from firmware.certs.policy import CertificatePolicy
    from firmware.certs.service import CertificateService
    from firmware.config.schema import WorkloadBudgets
    from firmware.executor import BoundedExecutor
    from firmware.identity.modules import ModuleIdentities
    from firmware.keys.file import FileBackend
    from firmware.keys.registry import BackendRegistry
    from firmware.keys.service import KeyService
    from firmware.store.state import StateStore

    executor = BoundedExecutor()
    keys = KeyService(
        BackendRegistry("file", {"file": lambda: FileBackend(root / "keys")}), executor
    )
    await keys.start()
    certs = CertificateService(keys, CertificatePolicy(directory=root / "certs"), executor)
    await certs.start()
    identities = ModuleIdentities(keys, StateStore(root / "state"), executor.run)
    await identities.start()
    identity = await identities.create(MODULE)
    router = Router()
    limits = SocketRateLimits(RateLimit(rate=1e9, burst=10**9))
    # The bench measures the handlers, not the budgets: both are set far above what it sends.
    unbudgeted = WorkloadBudgets(key_operations_per_module=10**6, key_operations=10**6)
    api = WorkloadApi(
        lambda: identities,
        lambda: certs,
        WorkloadAccess(None, executor.run),
        limits,
        ModuleBudgets(lambda: unbudgeted),
    )
    api.register(router)
    sockets = ModuleSockets(root / "run", router)
    await sockets.open(MODULE)
    print(f"READY {sockets.path(MODULE)} {identity.generation_id}", flush=True)
    stdin = asyncio.StreamReader()
    await asyncio.get_running_loop().connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin
    )
    await stdin.read()
    await sockets.close_all()
    await certs.stop()
    await keys.close()
    executor.shutdown()


# --- the client -----------------------------------------------------------------------------


def sign_request(genid: str) -> bytes:
    body = json.dumps(
        {"keyId": "primary", "algo": "HMACSHA256", "data": base64.b64encode(DATA).decode()}
    ).encode()
    head = (
        f"POST /modules/{MODULE}/genid/{genid}/sign?api-version={API_VERSION} HTTP/1.1\r\n"
        f"Host: localhost\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def one_client(path: str, request: bytes, until: float, latencies: list[float]) -> int:
    reader, writer = await asyncio.open_unix_connection(path)
    errors = 0
    try:
        while time.perf_counter() < until:
            start = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - start)
            if not head.startswith(b"HTTP/1.1 200"):
                errors += 1
    finally:
        writer.close()
        await writer.wait_closed()
    return errors


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def over_socket(
    path: str, genid: str, clients: int, seconds: float, server_pid: int
) -> Figures:
    request = sign_request(genid)
    cpu_before = cpu_seconds(server_pid)
    latencies: list[float] = []
    start = time.perf_counter()
    until = start + seconds
    errors = await asyncio.gather(
        *(one_client(path, request, until, latencies) for _ in range(clients))
    )
    elapsed = time.perf_counter() - start
    figures = summary(f"API, {clients} connection(s)", latencies, elapsed, sum(errors))
    figures.server_cpu_s = round(cpu_seconds(server_pid) - cpu_before, 3)
    return figures


def summary(subject: str, latencies: list[float], elapsed: float, errors: int = 0) -> Figures:
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else 0.0
    return Figures(
        subject,
        len(latencies),
        round(elapsed, 3),
        round(len(latencies) / elapsed, 1),
        round(statistics.median(ordered) * 1000, 3) if ordered else None,
        round(p99 * 1000, 3),
        errors,
    )


def hmac_in_process(seconds: float) -> Figures:
    key = os.urandom(32)
    count = 0
    start = time.perf_counter()
    until = start + seconds
    while time.perf_counter() < until:
        for _ in range(1000):
            hmac.digest(key, DATA, "sha256")
        count += 1000
    elapsed = time.perf_counter() - start
    return Figures("hmac.digest in-process", count, round(elapsed, 3), round(count / elapsed, 1))


async def key_service_in_process(root: Path, seconds: float) -> Figures:
    from firmware.executor import BoundedExecutor
    from firmware.identity.modules import ModuleIdentities
    from firmware.keys.backend import SignAlgorithm
    from firmware.keys.file import FileBackend
    from firmware.keys.registry import BackendRegistry
    from firmware.keys.service import KeyService
    from firmware.store.state import StateStore

    executor = BoundedExecutor()
    keys = KeyService(
        BackendRegistry("file", {"file": lambda: FileBackend(root / "keys")}), executor
    )
    await keys.start()
    identities = ModuleIdentities(keys, StateStore(root / "state"), executor.run)
    await identities.start()
    identity = await identities.ensure(MODULE)
    handle = await identities.key(MODULE, identity.generation_id)
    latencies: list[float] = []
    start = time.perf_counter()
    until = start + seconds
    while time.perf_counter() < until:
        began = time.perf_counter()
        await keys.sign(handle, SignAlgorithm.HMAC_SHA256, DATA)
        latencies.append(time.perf_counter() - began)
    elapsed = time.perf_counter() - start
    await keys.close()
    executor.shutdown()
    return summary("KeyService.sign in-process (derived key)", latencies, elapsed)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve))
        return 0
    root = Path(tempfile.mkdtemp(prefix="ekbw", dir="/tmp"))
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(root)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        assert server.stdout is not None
        ready = server.stdout.readline().split()
        if not ready or ready[0] != "READY":
            raise SystemExit("the bench server did not start")
        path, genid = ready[1], ready[2]
        results = [
            hmac_in_process(args.seconds),
            asyncio.run(key_service_in_process(root / "inproc", args.seconds)),
            asyncio.run(over_socket(path, genid, 1, args.seconds, server.pid)),
            asyncio.run(over_socket(path, genid, args.clients, args.seconds, server.pid)),
        ]
    finally:
        if server.stdin is not None:
            server.stdin.close()
        server.wait(timeout=30)
        shutil.rmtree(root, ignore_errors=True)
    baseline = results[0].per_second
    print(
        f"{'subject':<42} {'req/s':>10} {'p50 ms':>7} {'p99 ms':>7} {'ratio':>7} "
        f"{'req/cpu-s':>10} errors"
    )
    for figures in results:
        ratio = baseline / figures.per_second if figures.per_second else float("inf")
        p50 = f"{figures.p50_ms:.3f}" if figures.p50_ms is not None else "-"
        p99 = f"{figures.p99_ms:.3f}" if figures.p99_ms is not None else "-"
        per_cpu = f"{figures.per_cpu_second:.0f}" if figures.per_cpu_second else "-"
        print(
            f"{figures.subject:<42} {figures.per_second:>10.1f} {p50:>7} {p99:>7} "
            f"{ratio:>7.1f} {per_cpu:>10} {figures.errors}"
        )
    print("ratio = in-process hmac.digest rate / subject rate (the cost of the API around it)")
    print("req/cpu-s = requests per CPU-second of the server process (one busy core's rate)")
    if args.json:
        documents = [{**asdict(f), "per_cpu_second": f.per_cpu_second} for f in results]
        args.json.write_text(json.dumps(documents, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
