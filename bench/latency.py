"""Latency where a user waits, per build: the first certificate issue, the first deploy and the
technician's CLI commands, for each binary given and for the same daemon from source under CPython,
each figure's ratio against the first binary given.

Every subject runs as the tests run it (tests/peers/program.py, tests/peers/gateway.py): the daemon
is the build's program as the systemd unit starts it (a standalone build's own, or the one a
onefile binary unpacks; `python -m firmware` from this tree), against a private dockerd whose agent
is a sleeping busybox with `uds_http`; the CLI is the binary as a technician launches it (or
`python -m firmware`). Per repeat and subject, one data dir:

1. first boot (empty data dir: the CA chain is made at start): once the management API answers and
   the agent runs, the agent asks its workload socket for a server certificate (the first issue),
   then a second one, then the trust bundle (a cheap request: the measuring path's own cost);
2. restart on the same data dir (the certificates exist), left idle `--idle` seconds once the agent
   runs (the daemon gives back its start-up memory once settled, so a request may have to read
   code in again, as a module's first request hours after boot would): the same three requests;
3. restart again, idle as in 2: a module deployed (`POST /modules`, busybox, sleeping), timed from
   the request until the engine reports its container started (the engine's own event time); then
   `status`, `version` and `config validate` through the CLI, `--cli-runs` times each.

The workload requests come from a shell `docker exec` started in the agent's container before the
clock starts (the workload API serves only processes in the module's container): the clock runs
from writing the command line to that shell until its answer is read back, so every request also
carries the exec pipe's round trip, which `pipe round trip` (an `echo`) shows alone.

This is a benchmark, not a test: it asserts nothing about the figures.

    .venv/bin/python bench/latency.py --binary OLD --label before --binary dist/sim/edgekeeper \
        --label after [--repeats 3] [--cli-runs 10] [--idle 8] [--no-source] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from firmware.runtime.spec import MODULE_LABEL  # noqa: E402
from tests.peers.gateway import API, Gateway, new_gateway  # noqa: E402
from tests.peers.program import binary_selected  # noqa: E402
from tests.peers.sim import Dockerd, busybox_rootfs, require_program  # noqa: E402

BUSYBOX_IMAGE = "edgekeeper-bench/busybox:latest"
CLIENT_IMAGE = "edgekeeper-bench/client:latest"
UDS_HTTP = REPO / "tests" / "peers" / "uds_http.c"
WORKLOAD_SOCKET = "/var/run/iotedge/workload.sock"
END = "__bench_end__"
CLI_COMMANDS = (("status",), ("version",), ("config", "validate"))
TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Subject:
    """One build under measurement: `binary` is a one-file build, None the source under CPython."""

    label: str
    binary: Path | None

    def selected(self) -> contextlib.AbstractContextManager[None]:
        """tests/peers/program.py starts the binary EDGEKEEPER_BINARY names, else the source."""
        return binary_selected(self.binary)


@dataclass
class Samples:
    """Every figure's samples in seconds, by figure name, in the order first measured."""

    by_figure: dict[str, list[float]] = field(default_factory=dict)

    def add(self, figure: str, seconds: float) -> None:
        self.by_figure.setdefault(figure, []).append(seconds)


class ModuleShell:
    """A `sh` inside a module's container, fed one command line at a time over `docker exec -i`;
    `run()` times one line from writing it until its output, closed by a marker, is read back."""

    def __init__(self, dockerd: Dockerd, container: str) -> None:
        env = {**os.environ, "DOCKER_HOST": dockerd.uri, "DOCKER_CONFIG": str(dockerd.dir / "cli")}
        self.process = subprocess.Popen(
            [require_program("docker", "docker.io"), "exec", "-i", container, "sh"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            env=env,
        )
        self.run("true")  # the exec is attached once a first line has come back

    def run(self, line: str) -> tuple[float, list[str]]:
        assert self.process.stdin is not None and self.process.stdout is not None
        started = time.perf_counter()
        self.process.stdin.write(f"{line}; echo {END}\n")
        self.process.stdin.flush()
        output = []
        while (text := self.process.stdout.readline()) and text.rstrip("\n") != END:
            output.append(text.rstrip("\n"))
        elapsed = time.perf_counter() - started
        if not text:
            raise RuntimeError(f"the shell in the module's container ended: {output}")
        return elapsed, output

    def request(self, method: str, target: str, expected: int, body: str | None = None) -> float:
        """A workload request as the module makes it, in seconds; RuntimeError with the answer
        unless its status is `expected`."""
        line = f'uds_http {WORKLOAD_SOCKET} {method} "{target}?api-version={API}"'
        if body is not None:
            line += f' "{body}"'
        elapsed, output = self.run(line)
        if not output or output[0] != str(expected):
            raise RuntimeError(f"{method} {target}: expected {expected}, got {output}")
        return elapsed

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def certificate_requests(gateway: Gateway, samples: Samples, boot: str) -> None:
    """The first and a second server certificate the agent asks for, the trust bundle, and the
    exec pipe's own round trip; each must succeed."""
    shell = ModuleShell(gateway.dockerd, gateway.container_of(gateway.agent))
    try:
        expiry = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        # the agent is $edgeAgent to the workload API; its own server name drops the `$`
        body = f'{{\\"commonName\\":\\"edgeAgent\\",\\"expiration\\":\\"{expiry}\\"}}'
        target = "/modules/$IOTEDGE_MODULEID/genid/$IOTEDGE_MODULEGENERATIONID/certificate/server"
        for which in ("first", "second"):
            elapsed = shell.request("POST", target, 201, body)
            samples.add(f"{which} server certificate, {boot}", elapsed)
        samples.add(f"trust bundle request, {boot}", shell.request("GET", "/trust-bundle", 200))
        samples.add("pipe round trip (echo)", shell.run("echo")[0])
    finally:
        shell.close()


def engine_event_time(dockerd: Dockerd, module: str, action: str, since_ns: int) -> int:
    """The engine's own time (ns) of `module`'s container event `action` after `since_ns`."""
    listing = dockerd.docker(
        "events",
        "--since",
        f"{since_ns // 1_000_000_000}",
        "--until",
        f"{time.time() + 1:.3f}",
        "--filter",
        f"label={MODULE_LABEL}={module}",
        "--filter",
        f"event={action}",
        "--format",
        "{{.TimeNano}}",
    ).stdout.split()
    times = [int(value) for value in listing if int(value) >= since_ns]
    if not times:
        raise RuntimeError(f"the engine reported no {action} of module {module}")
    return min(times)


def first_deploy(gateway: Gateway, samples: Samples) -> None:
    """One module deployed on a freshly started daemon, until its container runs."""
    module = "benchmodule"
    requested = time.time_ns()
    started = time.perf_counter()
    gateway.deploy(module, BUSYBOX_IMAGE)
    samples.add("first deploy: answered", time.perf_counter() - started)
    gateway.container_of(module)
    running = engine_event_time(gateway.dockerd, module, "start", requested)
    samples.add("first deploy: container running", (running - requested) / 1e9)


def cli_commands(gateway: Gateway, samples: Samples, runs: int) -> None:
    """Each CLI command `runs` times, wall time from exec to exit; each must succeed."""
    for command in CLI_COMMANDS:
        for _ in range(runs):
            started = time.perf_counter()
            done = gateway.cli(*command)
            elapsed = time.perf_counter() - started
            if done.returncode != 0:
                raise RuntimeError(f"`{' '.join(command)}` failed: {done.stderr or done.stdout}")
            samples.add(f"cli {' '.join(command)}", elapsed)


def measure_once(
    dockerd: Dockerd, parent: Path, subject: Subject, samples: Samples, runs: int, idle_s: float
) -> None:
    """One repeat for `subject`: three boots of one data dir (see the module docstring)."""
    gateway = new_gateway(parent, dockerd, CLIENT_IMAGE, prefix="eklat")
    try:
        with subject.selected():
            gateway.start()
            certificate_requests(gateway, samples, "first boot")
            gateway.stop()
            gateway.start()
            settle(gateway, idle_s)
            certificate_requests(gateway, samples, "after restart, settled")
            gateway.stop()
            gateway.start()
            settle(gateway, idle_s)
            first_deploy(gateway, samples)
            gateway.cli("version")  # a one-file binary unpacks once per build; not what is timed
            cli_commands(gateway, samples, runs)
    finally:
        gateway.stop()
        dockerd.remove_containers(MODULE_LABEL)
        shutil.rmtree(gateway.root, ignore_errors=True)


def settle(gateway: Gateway, idle_s: float) -> None:
    """Once the agent runs, leave the daemon idle `idle_s` (it gives back start-up memory once
    settled, so what a later request needs may have to be read in again)."""
    gateway.container_of(gateway.agent)
    time.sleep(idle_s)


def client_rootfs(target: Path) -> Path:
    """busybox plus a static `uds_http` (what the tests' module containers hold)."""
    rootfs = busybox_rootfs(target)
    gcc = require_program("gcc", "gcc")
    subprocess.run(
        [gcc, "-static", "-O2", "-o", str(rootfs / "bin" / "uds_http"), str(UDS_HTTP)],
        check=True,
        capture_output=True,
    )
    (rootfs / "var" / "run").mkdir(parents=True, exist_ok=True)
    return rootfs


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


@dataclass(frozen=True)
class Figure:
    """One figure of one subject: median and p90 of its samples (seconds)."""

    median_s: float
    p90_s: float
    samples_s: tuple[float, ...]

    @classmethod
    def of(cls, values: list[float]) -> Figure:
        return cls(statistics.median(values), percentile(values, 0.9), tuple(values))


def report(subjects: list[Subject], figures: list[dict[str, Figure]]) -> str:
    """A markdown table: each figure's median per subject in ms (and p90 for the CLI), with its
    ratio against the first subject."""
    lines = [
        "| figure (median, ms) | " + " | ".join(s.label for s in subjects) + " |",
        "| --- |" + " --- |" * len(subjects),
    ]
    base = figures[0]
    for name in base:
        cells = []
        for mine in figures:
            figure = mine.get(name)
            if figure is None:
                cells.append("-")
                continue
            cell = f"{1000 * figure.median_s:.1f}"
            if name.startswith("cli "):
                cell += f" (p90 {1000 * figure.p90_s:.1f})"
            if mine is not base:
                cell += f" {ratio(figure, base[name])}"
            cells.append(cell)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ratio(figure: Figure, base: Figure) -> str:
    return f"{figure.median_s / base.median_s:.2f}x" if base.median_s else "-"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", type=Path, action="append", default=[], help="a one-file build")
    parser.add_argument(
        "--label", action="append", default=[], help="the binaries' names, in order"
    )
    parser.add_argument("--no-source", action="store_true", help="skip `python -m firmware`")
    parser.add_argument("--repeats", type=int, default=3, help="boots per subject (default 3)")
    parser.add_argument("--cli-runs", type=int, default=10, help="runs per CLI command per repeat")
    parser.add_argument(
        "--idle",
        type=float,
        default=8.0,
        help="idle seconds after a restart before its requests (default 8: the daemon settles 5 s "
        "after READY)",
    )
    parser.add_argument("--json", type=Path, help="write the figures here as JSON")
    args = parser.parse_args()
    if len(args.label) > len(args.binary):
        parser.error("more --label than --binary")
    subjects = []
    for index, binary in enumerate(args.binary):
        if not binary.is_file():
            parser.error(f"{binary} does not exist")
        label = args.label[index] if index < len(args.label) else str(binary)
        subjects.append(Subject(label, binary.resolve()))
    if not args.no_source:
        subjects.append(Subject(f"source (CPython {sys.version.split()[0]})", None))
    if not subjects:
        parser.error("nothing to measure: give --binary, or drop --no-source")

    samples = {subject.label: Samples() for subject in subjects}
    root = Path(tempfile.mkdtemp(prefix="eklat-", dir="/tmp"))
    root.chmod(0o755)
    dockerd = Dockerd(root / "engine")
    try:
        dockerd.start()
        dockerd.import_image(busybox_rootfs(root / "busybox"), BUSYBOX_IMAGE)
        dockerd.import_image(client_rootfs(root / "client"), CLIENT_IMAGE)
        for repeat in range(args.repeats):
            for subject in subjects:  # interleaved, so the machine's drift spreads over all
                print(f"repeat {repeat + 1}/{args.repeats}: {subject.label}", file=sys.stderr)
                measure_once(
                    dockerd, root, subject, samples[subject.label], args.cli_runs, args.idle
                )
    finally:
        dockerd.docker(
            "rm", "-f", *dockerd.docker("ps", "-aq", check=False).stdout.split(), check=False
        )
        dockerd.stop()
        shutil.rmtree(root, ignore_errors=True)

    figures = [
        {name: Figure.of(values) for name, values in samples[subject.label].by_figure.items()}
        for subject in subjects
    ]
    print(report(subjects, figures))
    if args.json:
        document = {
            "repeats": args.repeats,
            "cli_runs": args.cli_runs,
            "idle_s": args.idle,
            "baseline": subjects[0].label,
            "subjects": [
                {
                    "label": subject.label,
                    "binary": str(subject.binary) if subject.binary else None,
                    "figures": {name: asdict(figure) for name, figure in mine.items()},
                    "ratio_to_baseline": {
                        name: figure.median_s / figures[0][name].median_s
                        for name, figure in mine.items()
                        if name in figures[0] and figures[0][name].median_s
                    },
                }
                for subject, mine in zip(subjects, figures, strict=True)
            ],
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
