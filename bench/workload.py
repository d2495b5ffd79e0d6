"""Workload API sign throughput and latency over module sockets: the daemon (each binary given, and
the same daemon from source under CPython), the server stack alone, and the HMAC in-process.

Subjects, in one run:

- baselines in-process: `hmac.digest` (the work itself) and `KeyService.sign` with a module's
  derived key (the key service without HTTP);
- `stack`: the server stack in a process of its own under CPython (module sockets, router,
  `WorkloadApi`, module identities, the key service with its file backend), no daemon around it;
- each `--binary` (the program the tests' daemon runs for it, tests/peers/program.py) and, unless
  `--no-source`, `python -m firmware run` from this tree: `edgekeeper run` on a private dockerd
  (tests/peers/sim.py) with `--sockets` (8) busybox modules deployed through the management API,
  each with its own workload socket; the per-socket rate limit (`[workload] requests_per_socket`)
  and the key-operation budgets are raised so they do not bind. A build that does not know
  `requests_per_socket` runs with its default (1,000/s per socket), and the report says so.

Each subject is measured, after `--warmup` seconds of the same load, for `--seconds` with one
connection (one request at a time) and with `--connections` (16) spread evenly over the sockets,
each sending `POST /modules/<m>/genid/<g>/sign` again as soon as its answer is in. The load
comes from a separate process (`--load`): raw non-blocking unix sockets on one epoll, requests
built once, keep-alive, answers framed by Content-Length only, latencies in a histogram of 1 us
buckets. Its CPU time is reported beside the server's, so a saturated client shows.

Figures: requests/s (wall), p50/p99, requests per CPU-second of the server process (all its
threads: the rate one fully busy core would serve), client CPU share, and the in-process
`hmac.digest` rate over the subject's (the cost of the API around the HMAC). A 429 or any answer
other than 200 counts as an error.

    .venv/bin/python bench/workload.py [--binary dist/sim/edgekeeper] [--no-source] [--no-stack]
        [--seconds 5] [--warmup 1] [--connections 16] [--sockets 8] [--json out.json]
        [--profile stack.prof]
"""

from __future__ import annotations

import argparse
import array
import asyncio
import base64
import contextlib
import hmac
import json
import os
import selectors
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

DATA = b"myhub.azure-devices.net%2Fdevices%2Fgw%2Fmodules%2Fbench\n1900000000"
API_VERSION = "2020-10-10"
BUSYBOX_IMAGE = "edgekeeper-bench/busybox:latest"
UNBOUND_SOCKET_RATE = 1_000_000  # requests/s per socket: far above what one core can serve
UNBOUND_BUDGET = 100_000  # the largest [workload.budgets] key_operations allows
DEFAULT_SOCKET_RATE = 1000  # the product's per-socket default (firmware/api/workload/ratelimit.py)
HISTOGRAM_US = 200_000  # latencies at or above 200 ms share the last bucket


@dataclass(frozen=True)
class Target:
    """A module socket and the sign request its module may make on it."""

    socket: str
    module: str
    genid: str

    def request(self) -> bytes:
        body = json.dumps(
            {"keyId": "primary", "algo": "HMACSHA256", "data": base64.b64encode(DATA).decode()}
        ).encode()
        head = (
            f"POST /modules/{self.module}/genid/{self.genid}/sign?api-version={API_VERSION} "
            f"HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body


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
    client_cpu_s: float | None = None  # CPU time of the load process
    note: str = ""

    @property
    def per_cpu_second(self) -> float | None:
        """Requests per second of server CPU: the rate one fully busy core would serve."""
        if not self.server_cpu_s:
            return None
        return round(self.requests / self.server_cpu_s, 1)

    def document(self) -> dict[str, object]:
        return {**asdict(self), "per_cpu_second": self.per_cpu_second}


# --- the load process -------------------------------------------------------------------------


class LatencyHistogram:
    """Counts of latencies in 1 us buckets: constant memory for any number of requests."""

    def __init__(self) -> None:
        self.counts = array.array("Q", bytes(8 * (HISTOGRAM_US + 1)))
        self.total = 0

    def add(self, seconds: float) -> None:
        self.counts[min(int(seconds * 1e6), HISTOGRAM_US)] += 1
        self.total += 1

    def percentile_ms(self, fraction: float) -> float | None:
        if not self.total:
            return None
        wanted = max(1, int(self.total * fraction + 0.5))
        seen = 0
        for micros, count in enumerate(self.counts):
            seen += count
            if seen >= wanted:
                return (micros + 0.5) / 1000
        return HISTOGRAM_US / 1000


class _Exchange:
    """One keep-alive connection sending the same request again as soon as its answer is in."""

    def __init__(self, target: Target) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(target.socket)
        self.sock.setblocking(False)
        self.request = target.request()
        self.buffer = b""
        self.sent_at = 0.0

    def send(self) -> None:
        self.buffer = b""
        self.sent_at = time.perf_counter()
        self.sock.send(self.request)  # small: fits the empty socket buffer at once

    def answer(self) -> bytes | None:
        """The status code once the whole answer is in, else None (b"" if the server closed)."""
        chunk = self.sock.recv(65536)
        if not chunk:
            return b""
        self.buffer += chunk
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return None
        head = self.buffer[:end].lower()
        at = head.find(b"content-length:") + 15
        line_end = head.find(b"\r\n", at)
        length = int(head[at : line_end if line_end >= 0 else len(head)])
        if len(self.buffer) < end + 4 + length:
            return None
        return self.buffer[9:12]


def run_load(spec: dict[str, object]) -> None:
    """The load process: `spec` = {"targets": [...], "connections", "warmup", "seconds",
    "interval"}. Prints "GO" when the warm-up ends, a JSON line per `interval` (if any), and the
    figures as the last JSON line."""
    targets = [Target(**item) for item in spec["targets"]]  # type: ignore[attr-defined]
    connections = int(spec["connections"])  # type: ignore[call-overload]
    exchanges = [_Exchange(targets[index % len(targets)]) for index in range(connections)]
    selector = selectors.EpollSelector()
    for exchange in exchanges:
        selector.register(exchange.sock, selectors.EVENT_READ, exchange)
    warm_until = time.perf_counter() + float(spec["warmup"])  # type: ignore[arg-type]
    histogram = LatencyHistogram()
    errors: dict[str, int] = {}
    measuring = False
    start = cpu_start = 0.0
    end = float("inf")
    interval = float(spec.get("interval") or 0)  # type: ignore[arg-type]
    next_report = float("inf")
    window = window_errors = 0
    for exchange in exchanges:
        exchange.send()
    while True:
        for key, _ in selector.select(1.0):
            exchange = key.data
            status = exchange.answer()
            if status is None:
                continue
            now = time.perf_counter()
            if status == b"":
                raise SystemExit("the server closed a connection")
            if measuring:
                histogram.add(now - exchange.sent_at)
                window += 1
                if status != b"200":
                    name = status.decode()
                    errors[name] = errors.get(name, 0) + 1
                    window_errors += 1
            exchange.send()
        now = time.perf_counter()
        if not measuring and now >= warm_until:
            measuring = True
            start, cpu_start = now, time.process_time()
            end = start + float(spec["seconds"])  # type: ignore[arg-type]
            next_report = start + interval if interval else float("inf")
            print("GO", flush=True)
        if now >= next_report:
            print(
                json.dumps(
                    {"t": round(now - start, 1), "requests": window, "errors": window_errors}
                ),
                flush=True,
            )
            window = window_errors = 0
            next_report += interval
        if now >= end:
            break
    elapsed = time.perf_counter() - start
    client_cpu = time.process_time() - cpu_start
    for exchange in exchanges:
        exchange.sock.close()
    result = {
        "requests": histogram.total,
        "seconds": round(elapsed, 3),
        "p50_ms": histogram.percentile_ms(0.50),
        "p99_ms": histogram.percentile_ms(0.99),
        "errors": errors,
        "client_cpu_s": round(client_cpu, 3),
    }
    print(json.dumps(result), flush=True)


# --- driving the load against a server process ---------------------------------------------


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Load:
    """A load process against `targets`; `go()` waits for the end of its warm-up."""

    def __init__(
        self,
        targets: list[Target],
        connections: int,
        seconds: float,
        warmup: float,
        interval: float = 0.0,
    ) -> None:
        spec = {
            "targets": [asdict(target) for target in targets],
            "connections": connections,
            "seconds": seconds,
            "warmup": warmup,
            "interval": interval,
        }
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--load"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(spec))
        self.process.stdin.close()
        self._lines = self.process.stdout

    def go(self) -> None:
        line = self._lines.readline()
        if line.strip() != "GO":
            self.process.wait()
            raise SystemExit(f"the load process failed: {line!r}")

    def lines(self) -> Iterator[dict[str, object]]:
        """Its JSON lines, the last one being its figures."""
        for line in self._lines:
            yield json.loads(line)
        if self.process.wait() != 0:
            raise SystemExit("the load process failed")


def measure(
    subject: str,
    server_pid: int,
    targets: list[Target],
    connections: int,
    seconds: float,
    warmup: float,
    note: str = "",
) -> Figures:
    load = Load(targets, connections, seconds, warmup)
    load.go()
    cpu_before = cpu_seconds(server_pid)
    result = list(load.lines())[-1]
    server_cpu = cpu_seconds(server_pid) - cpu_before
    errors = result["errors"]
    assert isinstance(errors, dict)
    requests = int(result["requests"])  # type: ignore[call-overload]
    elapsed = float(result["seconds"])  # type: ignore[arg-type]
    return Figures(
        f"{subject}, {connections} connection(s)",
        requests,
        elapsed,
        round(requests / elapsed, 1),
        result["p50_ms"],  # type: ignore[arg-type]
        result["p99_ms"],  # type: ignore[arg-type]
        sum(errors.values()),
        round(server_cpu, 3),
        result["client_cpu_s"],  # type: ignore[arg-type]
        " ".join(
            part
            for part in (
                note,
                "a rate limit or budget bound (429s)" if "429" in errors else "",
                f"answers other than 200: {errors}" if errors else "",
            )
            if part
        ),
    )


# --- the server stack alone, in a process of its own ----------------------------------------


async def serve_stack(root: Path, modules: int, profile: Path | None) -> None:
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
    router = Router()
    unbudgeted = WorkloadBudgets(
        key_operations_per_module=UNBOUND_BUDGET, key_operations=UNBOUND_BUDGET
    )
    api = WorkloadApi(
        lambda: identities,
        lambda: certs,
        WorkloadAccess(None, executor.run),
        SocketRateLimits(RateLimit(rate=UNBOUND_SOCKET_RATE)),
        ModuleBudgets(lambda: unbudgeted),
    )
    api.register(router)
    sockets = ModuleSockets(root / "run", router)
    targets = []
    for index in range(modules):
        name = f"bench{index}"
        identity = await identities.create(name)
        await sockets.open(name, name)
        targets.append(asdict(Target(str(sockets.path(name)), name, identity.generation_id)))
    profiler = None
    if profile is not None:
        import cProfile  # only when profiling

        profiler = cProfile.Profile()
        profiler.enable()
    print(json.dumps(targets), flush=True)
    stdin = asyncio.StreamReader()
    await asyncio.get_running_loop().connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin
    )
    await stdin.read()
    if profiler is not None and profile is not None:
        profiler.disable()
        profiler.dump_stats(str(profile))
    await sockets.close_all()
    await certs.stop()
    await keys.close()
    executor.shutdown()


@contextlib.contextmanager
def stack_server(
    root: Path, modules: int, profile: Path | None
) -> Iterator[tuple[int, list[Target]]]:
    argv = [sys.executable, __file__, "--serve", str(root), "--sockets", str(modules)]
    if profile is not None:
        argv += ["--profile", str(profile)]
    server = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        if not line.startswith("["):
            raise SystemExit("the stack server did not start")
        yield server.pid, [Target(**item) for item in json.loads(line)]
    finally:
        if server.stdin is not None:
            server.stdin.close()
        server.wait(timeout=60)


# --- the daemon on a private dockerd --------------------------------------------------------


@dataclass(frozen=True)
class DaemonSubject:
    """`edgekeeper run` of a build (`binary`), or of the source (None)."""

    label: str
    binary: Path | None

    def selected(self) -> contextlib.AbstractContextManager[None]:
        """tests/peers/program.py runs the program of EDGEKEEPER_BINARY, else the source."""
        from tests.peers.program import binary_selected

        return binary_selected(self.binary)


@dataclass
class RunningDaemon:
    pid: int
    targets: list[Target]
    socket_rate: int  # the per-socket rate limit in force
    config: Path
    management_socket: Path
    gateway: object = field(repr=False)


def workload_toml(socket_rate: int | None) -> str:
    rate = f"[workload]\nrequests_per_socket = {socket_rate}\n\n" if socket_rate else ""
    return (
        f"{rate}[workload.budgets]\nkey_operations_per_module = {UNBOUND_BUDGET}\n"
        f"key_operations = {UNBOUND_BUDGET}\n"
    )


def knows_socket_rate(config: Path) -> bool:
    """True if the build accepts `[workload] requests_per_socket` (`config validate` passes)."""
    from tests.peers.program import cli_argv, program_env

    done = subprocess.run(
        [*cli_argv(), "--config", str(config), "config", "validate"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=program_env(),
        timeout=120,
        check=False,
    )
    return done.returncode == 0 or "requests_per_socket" not in done.stdout + done.stderr


@contextlib.contextmanager
def running_daemon(
    subject: DaemonSubject, dockerd: object, parent: Path, modules: int
) -> Iterator[RunningDaemon]:
    """The daemon of `subject` with `modules` sleeping busybox modules deployed, each socket
    answering."""
    from firmware.runtime.spec import MODULE_LABEL
    from tests.peers.gateway import new_gateway
    from tests.peers.waiting import wait_for_path

    with subject.selected():
        gateway = new_gateway(
            parent,
            dockerd,
            BUSYBOX_IMAGE,
            extra_toml=workload_toml(UNBOUND_SOCKET_RATE),
            prefix="ekwl",
        )
        socket_rate = UNBOUND_SOCKET_RATE
        if not knows_socket_rate(gateway.config):
            socket_rate = DEFAULT_SOCKET_RATE
            text = gateway.config.read_text().replace(workload_toml(UNBOUND_SOCKET_RATE), "")
            gateway.config.write_text(text + workload_toml(None))
        try:
            gateway.start()
            names = [f"bench{index}" for index in range(modules)]
            for name in names:
                gateway.deploy(name, BUSYBOX_IMAGE)
            sockets = {name: gateway.run_dir / "mnt" / name / "workload.sock" for name in names}
            for path in sockets.values():
                wait_for_path(path, timeout_s=60, process=gateway.process, log=gateway.log_path)
            listed = gateway.request("GET", "/identities").json()
            genids = {item["moduleId"]: item["generationId"] for item in listed["identities"]}
            targets = [Target(str(sockets[name]), name, genids[name]) for name in names]
            assert gateway.process is not None
            yield RunningDaemon(
                gateway.process.pid,
                targets,
                socket_rate,
                gateway.config,
                gateway.management_socket,
                gateway,
            )
        finally:
            gateway.stop()
            dockerd.remove_containers(MODULE_LABEL)  # type: ignore[attr-defined]
            shutil.rmtree(gateway.root, ignore_errors=True)


@contextlib.contextmanager
def private_dockerd(root: Path) -> Iterator[object]:
    """A private dockerd with the busybox image the bench's modules run."""
    from tests.peers.sim import Dockerd, busybox_rootfs

    dockerd = Dockerd(root / "engine")
    try:
        dockerd.start()
        dockerd.import_image(busybox_rootfs(root / "busybox"), BUSYBOX_IMAGE)
        yield dockerd
    finally:
        leftover = dockerd.docker("ps", "-aq", check=False).stdout.split()
        if leftover:
            dockerd.docker("rm", "-f", *leftover, check=False)
        dockerd.stop()


# --- baselines in-process -------------------------------------------------------------------


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
    identity = await identities.ensure("bench")
    handle = await identities.key("bench", identity.generation_id)
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
    ordered = sorted(latencies)
    return Figures(
        "KeyService.sign in-process (derived key)",
        len(ordered),
        round(elapsed, 3),
        round(len(ordered) / elapsed, 1),
        round(statistics.median(ordered) * 1000, 4),
        round(ordered[int(len(ordered) * 0.99)] * 1000, 4),
    )


# --- report ---------------------------------------------------------------------------------


def report(results: list[Figures]) -> str:
    baseline = results[0].per_second
    lines = [
        f"{'subject':<58} {'req/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'ratio':>6} "
        f"{'req/cpu-s':>9} {'client':>6} errors"
    ]
    for figures in results:
        ratio = baseline / figures.per_second if figures.per_second else float("inf")
        p50 = f"{figures.p50_ms:.3f}" if figures.p50_ms is not None else "-"
        p99 = f"{figures.p99_ms:.3f}" if figures.p99_ms is not None else "-"
        per_cpu = f"{figures.per_cpu_second:.0f}" if figures.per_cpu_second else "-"
        client = (
            f"{figures.client_cpu_s / figures.seconds:.0%}"
            if figures.client_cpu_s is not None
            else "-"
        )
        lines.append(
            f"{figures.subject:<58} {figures.per_second:>9.0f} {p50:>7} {p99:>7} "
            f"{ratio:>6.1f} {per_cpu:>9} {client:>6} {figures.errors}"
        )
        if figures.note:
            lines.append(f"    {figures.note}")
    lines += [
        "ratio = in-process hmac.digest rate / subject rate (the cost of the API around it)",
        "req/cpu-s = requests per CPU-second of the server process (one busy core's rate)",
        "client = CPU share of one core the load process used",
        "issue 13 targets (daemon, 16 connections over 8 sockets): >= 10,000 req/cpu-s "
        "(aim 15,000), p99 < 2.5 ms (aim 1.5 ms)",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", type=Path, action="append", default=[])
    parser.add_argument("--no-source", action="store_true", help="skip the daemon from source")
    parser.add_argument("--no-stack", action="store_true", help="skip the server stack alone")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--sockets", type=int, default=8)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--profile", type=Path, help="cProfile the stack server into this file")
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--load", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        run_load(json.loads(sys.stdin.read()))
        return 0
    if args.serve:
        asyncio.run(serve_stack(args.serve, args.sockets, args.profile))
        return 0
    subjects = [DaemonSubject(str(binary), binary.resolve()) for binary in args.binary]
    if not args.no_source:
        subjects.append(DaemonSubject(f"source (CPython {sys.version.split()[0]})", None))

    root = Path(tempfile.mkdtemp(prefix="ekbw", dir="/tmp"))
    root.chmod(0o755)
    results = [hmac_in_process(min(args.seconds, 2.0))]
    try:
        results.append(asyncio.run(key_service_in_process(root / "inproc", min(args.seconds, 2.0))))

        def both(subject: str, pid: int, targets: list[Target], note: str = "") -> None:
            for connections in (1, args.connections):
                results.append(
                    measure(subject, pid, targets, connections, args.seconds, args.warmup, note)
                )

        if not args.no_stack:
            with stack_server(root / "stack", args.sockets, args.profile) as (pid, targets):
                both(f"stack alone, {len(targets)} sockets", pid, targets)
        if subjects:
            with private_dockerd(root) as dockerd:
                for subject in subjects:
                    with running_daemon(subject, dockerd, root, args.sockets) as daemon:
                        note = (
                            ""
                            if daemon.socket_rate == UNBOUND_SOCKET_RATE
                            else f"this build has no requests_per_socket: its "
                            f"{DEFAULT_SOCKET_RATE}/s per socket binds"
                        )
                        both(
                            f"daemon {subject.label}, {len(daemon.targets)} sockets",
                            daemon.pid,
                            daemon.targets,
                            note,
                        )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(report(results))
    if args.json:
        args.json.write_text(json.dumps([figures.document() for figures in results], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
