"""Footprint of the built program beside the same run's baselines, the anchors' published figures
and the targets of issue 13.

For each subject: file size, everything it writes to the gateway's flash, start-to-ready (the
console answers on its pty AND sd_notify READY=1 arrives on a NOTIFY_SOCKET this bench listens
on), RSS / PSS / anonymous memory summed over every process the subject runs (a onefile bootstrap
included) after an idle settle time, and CPU time and wake-ups (voluntary + involuntary context
switches of every thread) over an idle window. Each edgekeeper subject is measured as a gateway
in service: a first start on an empty data directory (it issues its certificates; its
start-to-ready is reported as the first start's) is stopped once settled, and the figures come
from the next start on the same data.

Subjects: the build `--binary` names (default `dist/sim/edgekeeper`): for a onefile build, the
binary as launched (bootstrap and child) and the program it unpacks, as systemd ran it; for a
standalone build (a link into `<name>.dist/`), its program run from that directory. Optionally a
further standalone directory (`--standalone DIR`) and a squashfs image of one (`--image IMG`,
mounted read-only on a loop device, root only; its program run from the mount, as the board's
unit runs it). Then the baselines: the same daemon under CPython (`python -m firmware run` from
this tree, same config) and `python3 -c` that sends READY=1 and sleeps. Flash is the onefile
binary plus the directory it unpacks, a standalone directory's total, or an image's size. The
image's subject also starts once on a cold page cache (`echo 3 > /proc/sys/vm/drop_caches`
first), as every daemon subject does with `--cold`. Figures are printed per subject with their
ratio to `python3 -c`, then as a table beside issue 13's targets and the published figures of
IoT Edge and Greengrass nucleus lite; `--json` writes subjects, targets and anchors.

    .venv/bin/python bench/footprint.py [--binary dist/sim/edgekeeper] [--standalone DIR]
        [--image dist/sim/edgekeeper.squashfs] [--cold] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.peers.sim import Dockerd, busybox_rootfs  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PROMPT = b"edgekeeper> "


@dataclass
class Figures:
    subject: str
    file_size_bytes: int = 0
    flash_bytes: int = 0
    start_to_ready_s: float = 0.0
    first_start_to_ready_s: float | None = None
    cold_start_to_ready_s: float | None = None
    processes: int = 0
    rss_kib: int = 0
    pss_kib: int = 0
    anonymous_kib: int = 0
    cpu_s: float = 0.0
    wakeups: int = 0
    window_s: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def wakeups_per_s(self) -> float:
        return self.wakeups / self.window_s if self.window_s else 0.0


def descendants(root: int) -> list[int]:
    """`root` and every process below it."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, queue = [], [root]
    while queue:
        pid = queue.pop()
        found.append(pid)
        queue.extend(children.get(pid, []))
    return found


def memory_kib(pid: int) -> dict[str, int]:
    figures = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, value = line.split(":", 1)
        figures[name.strip()] = int(value.split()[0])
    return figures


def cpu_and_switches(pids: list[int]) -> tuple[float, int]:
    ticks, switches = 0, 0
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                stat = (task / "stat").read_text().rsplit(")", 1)[1].split()
                ticks += int(stat[11]) + int(stat[12])
                for line in (task / "status").read_text().splitlines():
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        switches += int(line.split()[1])
            except OSError:
                continue
    return ticks / CLOCK_TICKS, switches


class NotifyListener:
    """A datagram socket standing in for systemd's NOTIFY_SOCKET."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "notify.sock"
        self.path.unlink(missing_ok=True)  # a previous start's, in the same directory
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))

    def wait_ready(self, deadline: float) -> float | None:
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                message = self.sock.recv(4096)
            except TimeoutError:
                return None
            if b"READY=1" in message.split(b"\n"):
                return time.monotonic()
        return None

    def close(self) -> None:
        self.sock.close()


def console_answers(pty_file: Path, deadline: float) -> float | None:
    """Time at which the console on the pty named in `pty_file` shows its prompt after Enter."""
    while time.monotonic() < deadline and not pty_file.exists():
        time.sleep(0.002)
    if not pty_file.exists():
        return None
    fd = os.open(pty_file.read_text().strip(), os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    try:
        os.write(fd, b"\r")
        seen = b""
        while time.monotonic() < deadline:
            try:
                seen += os.read(fd, 4096)
            except BlockingIOError:
                time.sleep(0.002)
                continue
            if PROMPT in seen:
                return time.monotonic()
        return None
    finally:
        os.close(fd)


AGENT_IMAGE = "edgekeeper-bench/agent:1"


def write_config(workdir: Path, engine: Dockerd) -> Path:
    """The steady state of a gateway: console on a pty, the agent container up and running."""
    config = workdir / "config.toml"
    config.write_text(
        "[paths]\n"
        f'data_dir = "{workdir / "data"}"\n'
        f'run_dir = "{workdir / "run"}"\n'
        '[console]\ndevice = "pty"\n'
        '[logging]\nlevel = "warning"\n'
        f'[runtime]\nuri = "{engine.uri}"\n'
        '[agent]\nname = "edgeAgent"\nimagePullPolicy = "never"\n'
        f'[agent.config]\nimage = "{AGENT_IMAGE}"\n'
        '[agent.config.createOptions]\nCmd = ["sleep", "1000000"]\n'
        '[agent.config.createOptions.HostConfig]\nNetworkMode = "none"\n'
    )
    return config


@dataclass(frozen=True)
class Subject:
    """What is measured: `argv` starts it (`run --config FILE` appended for edgekeeper, whose
    console answers on a pty), `size_bytes` is the file executed and `flash_bytes` all it writes to
    flash (0 where that means nothing: the baselines); `cold` adds a start on a cold page cache."""

    label: str
    argv: tuple[str, ...]
    size_bytes: int
    flash_bytes: int = 0
    edgekeeper: bool = True
    env: tuple[tuple[str, str], ...] = ()
    cold: bool = False


@contextlib.contextmanager
def started(subject: Subject, workdir: Path, engine: Dockerd) -> Iterator[tuple[int, float]]:
    """Start `subject` in `workdir` (a config of its own), wait until it is ready, yield its pid
    and the start-to-ready time; SIGTERM it and remove the agent's container afterwards."""
    workdir.mkdir(exist_ok=True)
    argv = list(subject.argv)
    if subject.edgekeeper:
        argv += ["run", "--config", str(write_config(workdir, engine))]
    listener = NotifyListener(workdir)
    env = dict(os.environ, NOTIFY_SOCKET=str(listener.path), LANG="C.UTF-8", **dict(subject.env))
    env.pop("WATCHDOG_USEC", None)
    log = open(workdir / "subject.log", "wb")  # noqa: SIM115 - closed below
    started_at = time.monotonic()
    process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    try:
        deadline = started_at + 30
        ready_at = listener.wait_ready(deadline)
        if ready_at is None:
            raise RuntimeError(f"{subject.label}: no READY=1 within 30 s (log {log.name})")
        pty_file = workdir / "run" / "console.pty"
        answered_at = console_answers(pty_file, deadline) if subject.edgekeeper else ready_at
        if answered_at is None:
            raise RuntimeError(f"{subject.label}: console did not answer in 30 s (log {log.name})")
        yield process.pid, max(ready_at, answered_at) - started_at
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        listener.close()
        if subject.edgekeeper:
            engine.docker("rm", "--force", "edgeAgent", check=False)


def measure(
    subject: Subject, workdir: Path, engine: Dockerd, settle_s: float, window_s: float
) -> Figures:
    figures = Figures(
        subject=subject.label, file_size_bytes=subject.size_bytes, flash_bytes=subject.flash_bytes
    )
    if subject.cold:
        drop_page_cache()
        with started(subject, workdir / "cold", engine) as (_, start_to_ready_s):
            figures.cold_start_to_ready_s = start_to_ready_s
    if subject.edgekeeper:
        with started(subject, workdir / "warm", engine) as (_, start_to_ready_s):
            figures.first_start_to_ready_s = start_to_ready_s
            time.sleep(settle_s)  # certificates are issued after READY: let it finish
    with started(subject, workdir / "warm", engine) as (pid, start_to_ready_s):
        figures.start_to_ready_s = start_to_ready_s
        time.sleep(settle_s)
        pids = descendants(pid)
        figures.processes = len(pids)
        for each in pids:
            memory = memory_kib(each)
            figures.rss_kib += memory.get("Rss", 0)
            figures.pss_kib += memory.get("Pss", 0)
            figures.anonymous_kib += memory.get("Anonymous", 0)
        cpu_before, switches_before = cpu_and_switches(pids)
        time.sleep(window_s)
        cpu_after, switches_after = cpu_and_switches(descendants(pid))
        figures.cpu_s = round(cpu_after - cpu_before, 3)
        figures.wakeups = switches_after - switches_before
        figures.window_s = window_s
    figures.notes.append(f"logs in {workdir}")
    return figures


def drop_page_cache() -> None:
    """Write back, then drop the page cache, dentries and inodes (root only): a cold start."""
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def unpacked_program(binary: Path) -> Path | None:
    """The program a onefile binary unpacked (what systemd runs), if this is a onefile build."""
    keyfile = binary.with_name("edgekeeper.buildkey")
    if not keyfile.exists():
        return None
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    program = cache / "edgekeeper" / keyfile.read_text().strip()[:16] / "edgekeeper.bin"
    return program if program.exists() else None


def program_in(directory: Path) -> Path:
    """The program of a standalone directory: `edgekeeper`, or `edgekeeper.bin` as a onefile
    binary unpacks it."""
    for name in ("edgekeeper", "edgekeeper.bin"):
        if (directory / name).is_file():
            return directory / name
    raise FileNotFoundError(f"{directory} holds neither edgekeeper nor edgekeeper.bin")


def tree_bytes(directory: Path) -> int:
    """The bytes of every regular file under `directory` (symlinks not followed)."""
    return sum(
        entry.lstat().st_size
        for entry in directory.rglob("*")
        if entry.is_file() and not entry.is_symlink()
    )


@contextlib.contextmanager
def mounted(image: Path, mountpoint: Path) -> Iterator[Path]:
    """`image` (squashfs) mounted read-only on a loop device at `mountpoint`, unmounted after."""
    mountpoint.mkdir()
    subprocess.run(
        ["mount", "-t", "squashfs", "-o", "loop,ro", str(image), str(mountpoint)],
        check=True,
        capture_output=True,
    )
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", str(mountpoint)], check=True, capture_output=True)


@dataclass(frozen=True)
class Target:
    """A measure issue 13 sets: the figure's field, its unit's divisor, must and aim."""

    measure: str
    unit: str
    must: float
    aim: float

    def value(self, figures: Figures) -> float | None:
        raw = getattr(figures, self.field)
        return None if raw is None else raw / self.divisor

    @property
    def field(self) -> str:
        return MEASURES[self.measure][0]

    @property
    def divisor(self) -> float:
        return MEASURES[self.measure][1]


@dataclass(frozen=True)
class Anchor:
    """A published figure of a comparable daemon, for one measure."""

    who: str
    measure: str
    unit: str
    values: tuple[tuple[str, float], ...]

    def text(self) -> str:
        labels = [where for where, _ in self.values]
        if labels == ["min", "max"]:
            return f"{self.values[0][1]:g}-{self.values[1][1]:g} {self.unit}"
        return ", ".join(f"{value:g} {self.unit} {where}".strip() for where, value in self.values)


# measure -> (Figures field, divisor to the unit the targets and anchors use)
MEASURES = {
    "idle RSS": ("rss_kib", 1024),
    "idle anonymous": ("anonymous_kib", 1024),
    "flash": ("flash_bytes", 1e6),
    "start-to-ready": ("start_to_ready_s", 1),
    "start-to-ready, cold page cache": ("cold_start_to_ready_s", 1),
}
TARGETS = (
    Target("idle RSS", "MB", must=30, aim=25),
    Target("idle anonymous", "MB", must=15, aim=12),
    Target("flash", "MB", must=35, aim=25),
    Target("start-to-ready", "s", must=0.15, aim=0.1),
)
ANCHORS = (
    Anchor(
        "Azure IoT Edge host daemons, published memory profile",
        "idle RSS",
        "MB",
        (("x86_64", 55), ("armv7", 36), ("aarch64", 27)),
    ),
    Anchor("AWS Greengrass nucleus lite (C)", "idle RSS", "MB", (("min", 12), ("max", 16))),
    Anchor("Azure IoT Edge binaries on flash", "flash", "MB", (("", 43),)),
)


def ratio(value: float, base: float) -> str:
    return f"{value / base:6.2f}x" if base else "     -"


def report(results: list[Figures]) -> None:
    base = results[-1]
    rows: list[tuple[str, Callable[[Figures], float | None]]] = [
        ("file size (MB)", lambda f: f.file_size_bytes / 1e6 or None),
        ("flash (MB)", lambda f: f.flash_bytes / 1e6 or None),
        ("start-to-ready (s)", lambda f: f.start_to_ready_s),
        ("  first start (s)", lambda f: f.first_start_to_ready_s),
        ("  cold page cache (s)", lambda f: f.cold_start_to_ready_s),
        ("processes", lambda f: f.processes),
        ("idle RSS (MB)", lambda f: f.rss_kib / 1024),
        ("idle PSS (MB)", lambda f: f.pss_kib / 1024),
        ("idle anonymous (MB)", lambda f: f.anonymous_kib / 1024),
        ("idle CPU (s/window)", lambda f: f.cpu_s),
        ("wake-ups (/s)", lambda f: f.wakeups_per_s),
    ]
    for figures in results:
        print(f"\n== {figures.subject}")
        for label, value in rows:
            mine, theirs = value(figures), value(base)
            if mine is None:
                continue
            against = f"   {ratio(mine, theirs)} of python3 ({theirs:.3f})" if theirs else ""
            print(f"  {label:22} {mine:10.3f}{against}")
    print("\n" + targets_table(results))


def targets_table(results: list[Figures]) -> str:
    """Each target's measure for every subject (edgekeeper's marked aim/must/over), the targets and
    the anchors' published figures, as a markdown table."""
    lines = [
        "| measure | " + " | ".join(f.subject for f in results) + " | must | aim | published |",
        "| --- |" + " --- |" * (len(results) + 3),
    ]
    for target in TARGETS:
        cells = []
        for figures in results:
            value = target.value(figures)
            cells.append("-" if not value else f"{value:.3g}{verdict(target, value, figures)}")
        anchors = "; ".join(f"{a.who}: {a.text()}" for a in ANCHORS if a.measure == target.measure)
        lines.append(
            f"| {target.measure} ({target.unit}) | " + " | ".join(cells) + f" | ≤ {target.must:g}"
            f" | ≤ {target.aim:g} | {anchors or '-'} |"
        )
    first = [f.first_start_to_ready_s for f in results]
    if any(first):
        cells = ["-" if not value else f"{value:.3g}" for value in first]
        lines.append("| start-to-ready, first start (s) | " + " | ".join(cells) + " | | | - |")
    cold = [f.cold_start_to_ready_s for f in results]
    if any(cold):
        cells = ["-" if not value else f"{value:.3g}" for value in cold]
        lines.append("| start-to-ready, cold page cache (s) | " + " | ".join(cells) + " | | | - |")
    return "\n".join(lines)


def verdict(target: Target, value: float, figures: Figures) -> str:
    if not figures.subject.startswith("edgekeeper"):
        return ""
    if value <= target.aim:
        return " (aim met)"
    return " (must met)" if value <= target.must else " (over)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--binary", type=Path, default=REPO / "dist" / "sim" / "edgekeeper")
    parser.add_argument(
        "--standalone", type=Path, help="a standalone directory to measure (its program run)"
    )
    parser.add_argument(
        "--image", type=Path, help="a squashfs image of a standalone directory (root: loop mount)"
    )
    parser.add_argument(
        "--cold", action="store_true", help="a cold-page-cache start for every edgekeeper subject"
    )
    parser.add_argument(
        "--python",
        default="/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable,
        help="the interpreter measured as the baseline",
    )
    parser.add_argument(
        "--cpython",
        default=str(REPO / ".venv" / "bin" / "python"),
        help="the interpreter that runs the daemon from source (default: the venv's)",
    )
    parser.add_argument("--settle", type=float, default=10.0, help="idle time before memory (s)")
    parser.add_argument("--window", type=float, default=30.0, help="idle CPU window (s)")
    parser.add_argument("--json", type=Path, help="write the figures here as JSON")
    args = parser.parse_args()
    if not args.binary.exists():
        parser.error(f"{args.binary} does not exist: run `python3 build.py build --board sim`")
    if (args.image or args.cold) and os.geteuid() != 0:
        parser.error("--image and --cold need root (loop mount, drop_caches)")

    results = []
    with tempfile.TemporaryDirectory(prefix="footprint-") as tmp, contextlib.ExitStack() as stack:
        base = Path(tmp)
        engine = Dockerd(base / "engine")
        engine.start()
        stack.callback(engine.stop)
        engine.import_image(busybox_rootfs(base / "agent-rootfs"), AGENT_IMAGE)
        for index, subject in enumerate(subjects(args, base, stack)):
            print(f"measuring {subject.label}", file=sys.stderr)
            workdir = base / f"subject-{index}"
            workdir.mkdir()
            results.append(measure(subject, workdir, engine, args.settle, args.window))
    report(results)
    if args.json:
        document = {
            "subjects": [asdict(f) | {"wakeups_per_s": f.wakeups_per_s} for f in results],
            "targets": [asdict(target) for target in TARGETS],
            "anchors": [asdict(anchor) | {"values": dict(anchor.values)} for anchor in ANCHORS],
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    return 0


def subjects(
    args: argparse.Namespace, base: Path, stack: contextlib.ExitStack
) -> Iterator[Subject]:
    """The subjects in the order measured, the baselines last (python3 -c the very last: the
    ratios' base); an image stays mounted until `stack` closes."""
    binary = args.binary.resolve()
    if binary.parent.name.endswith(".dist"):  # a standalone build (as tests/peers/program.py tells)
        yield standalone(binary.parent, args.cold)
    else:
        yield from onefile(binary, args.cold)
    if args.standalone:
        yield standalone(args.standalone.resolve(), args.cold)
    if args.image:
        image = args.image.resolve()
        program = program_in(stack.enter_context(mounted(image, base / "image")))
        yield Subject(
            "edgekeeper (squashfs image, mounted read-only)",
            (str(program),),
            program.stat().st_size,
            flash_bytes=image.stat().st_size,
            cold=True,
        )
    cpython = Path(args.cpython)
    yield Subject(
        "same daemon under CPython (python -m firmware)",
        (str(cpython), "-m", "firmware"),
        0,
        env=(("PYTHONPATH", str(REPO)),),
        cold=args.cold,
    )
    interpreter = Path(args.python).resolve()
    yield Subject(
        f"python3 -c ({interpreter})",
        (str(interpreter), "-c", BASELINE),
        interpreter.stat().st_size,
        edgekeeper=False,
    )


def onefile(binary: Path, cold: bool) -> Iterator[Subject]:
    """A onefile build as launched, and the program it unpacks as systemd ran it; both write the
    binary and the unpacked directory to flash."""
    size = binary.stat().st_size
    subprocess.run([binary, "version"], check=True, capture_output=True)  # unpacks, once per build
    unpacked = unpacked_program(binary)
    flash = size + (tree_bytes(unpacked.parent) if unpacked is not None else 0)
    yield Subject("edgekeeper (onefile, as launched)", (str(binary),), size, flash, cold=cold)
    if unpacked is not None:
        yield Subject(
            "edgekeeper (unpacked, as systemd runs it)",
            (str(unpacked),),
            unpacked.stat().st_size,
            flash_bytes=flash,
            cold=cold,
        )


def standalone(directory: Path, cold: bool) -> Subject:
    """The program of a standalone directory, run from it; the directory is what flash holds."""
    program = program_in(directory)
    return Subject(
        f"edgekeeper (standalone directory {directory.name})",
        (str(program),),
        program.stat().st_size,
        flash_bytes=tree_bytes(directory),
        cold=cold,
    )


BASELINE = (
    "import os, signal, socket\n"
    "s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
    "s.sendto(b'READY=1', os.environ['NOTIFY_SOCKET'])\n"
    "signal.pause()\n"
)


if __name__ == "__main__":
    sys.exit(main())
