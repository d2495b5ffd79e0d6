"""Footprint of the built binary against a bare `python3 -c` interpreter measured in the same run.

For each subject: file size, start-to-ready (the console answers on its pty AND sd_notify READY=1
arrives on a NOTIFY_SOCKET this bench listens on), RSS / PSS / anonymous memory summed over every
process the subject runs (a onefile bootstrap included) after an idle settle time, and CPU time
and wake-ups (voluntary + involuntary context switches of every thread) over an idle window.

Subjects: `dist/sim/edgekeeper` as launched (the onefile bootstrap and its child), the unpacked
program as systemd runs it (one process), and `python3 -c` that sends READY=1 and sleeps.

    .venv/bin/python bench/footprint.py [--binary dist/sim/edgekeeper] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
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
    start_to_ready_s: float = 0.0
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


def measure(
    subject: str,
    argv: list[str],
    size_of: Path,
    workdir: Path,
    settle_s: float,
    window_s: float,
    pty_file: Path | None,
) -> Figures:
    figures = Figures(subject=subject, file_size_bytes=size_of.stat().st_size)
    listener = NotifyListener(workdir)
    env = dict(os.environ, NOTIFY_SOCKET=str(listener.path), LANG="C.UTF-8")
    env.pop("WATCHDOG_USEC", None)
    log = open(workdir / f"{subject.split()[0]}.log", "wb")  # noqa: SIM115 - closed below
    started = time.monotonic()
    process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = started + 30
        ready_at = listener.wait_ready(deadline)
        if ready_at is None:
            raise RuntimeError(f"{subject}: no READY=1 within 30 s (log {log.name})")
        answered_at = console_answers(pty_file, deadline) if pty_file else ready_at
        if answered_at is None:
            raise RuntimeError(f"{subject}: console did not answer within 30 s (log {log.name})")
        figures.start_to_ready_s = max(ready_at, answered_at) - started
        time.sleep(settle_s)
        pids = descendants(process.pid)
        figures.processes = len(pids)
        for pid in pids:
            memory = memory_kib(pid)
            figures.rss_kib += memory.get("Rss", 0)
            figures.pss_kib += memory.get("Pss", 0)
            figures.anonymous_kib += memory.get("Anonymous", 0)
        cpu_before, switches_before = cpu_and_switches(pids)
        time.sleep(window_s)
        cpu_after, switches_after = cpu_and_switches(descendants(process.pid))
        figures.cpu_s = round(cpu_after - cpu_before, 3)
        figures.wakeups = switches_after - switches_before
        figures.window_s = window_s
    finally:
        process.send_signal(signal.SIGTERM)
        figures.notes.append(f"log {log.name}")
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        listener.close()
    return figures


def unpacked_program(binary: Path) -> Path | None:
    """The program a onefile binary unpacked (what systemd runs), if this is a onefile build."""
    keyfile = binary.with_name("edgekeeper.buildkey")
    if not keyfile.exists():
        return None
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    program = cache / "edgekeeper" / keyfile.read_text().strip()[:16] / "edgekeeper.bin"
    return program if program.exists() else None


def ratio(value: float, base: float) -> str:
    return f"{value / base:6.2f}x" if base else "     -"


def report(results: list[Figures]) -> None:
    base = results[-1]
    rows = [
        ("file size (MB)", lambda f: f.file_size_bytes / 1e6),
        ("start-to-ready (s)", lambda f: f.start_to_ready_s),
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
            print(f"  {label:22} {mine:10.3f}   {ratio(mine, theirs)} of python3 ({theirs:.3f})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--binary", type=Path, default=REPO / "dist" / "sim" / "edgekeeper")
    parser.add_argument(
        "--python",
        default="/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable,
        help="the interpreter measured as the baseline",
    )
    parser.add_argument("--settle", type=float, default=10.0, help="idle time before memory (s)")
    parser.add_argument("--window", type=float, default=30.0, help="idle CPU window (s)")
    parser.add_argument("--json", type=Path, help="write the figures here as JSON")
    args = parser.parse_args()
    if not args.binary.exists():
        parser.error(f"{args.binary} does not exist: run `python3 build.py build --board sim`")

    results = []
    with tempfile.TemporaryDirectory(prefix="footprint-") as tmp:
        base = Path(tmp)
        engine = Dockerd(base / "engine")
        engine.start()
        try:
            engine.import_image(busybox_rootfs(base / "agent-rootfs"), AGENT_IMAGE)
            binary = args.binary.resolve()
            subjects = [("edgekeeper (onefile, as launched)", binary)]
            for subject, program in subjects:
                workdir = base / subject.split()[1].strip("(,")
                workdir.mkdir()
                config = write_config(workdir, engine)
                argv = [str(program), "run", "--config", str(config)]
                pty_file = workdir / "run" / "console.pty"
                results.append(
                    measure(subject, argv, program, workdir, args.settle, args.window, pty_file)
                )
                engine.docker("rm", "--force", "edgeAgent", check=False)
                unpacked = unpacked_program(binary)
                if program == binary and unpacked is not None:
                    subjects.append(("edgekeeper (unpacked, as systemd runs it)", unpacked))
            workdir = base / "python"
            workdir.mkdir()
            interpreter = Path(args.python).resolve()
            baseline = (
                "import os, signal, socket\n"
                "s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
                "s.sendto(b'READY=1', os.environ['NOTIFY_SOCKET'])\n"
                "signal.pause()\n"
            )
            results.append(
                measure(
                    f"python3 -c ({interpreter})",
                    [str(interpreter), "-c", baseline],
                    interpreter,
                    workdir,
                    args.settle,
                    args.window,
                    None,
                )
            )
        finally:
            engine.stop()
    report(results)
    if args.json:
        args.json.write_text(
            json.dumps([asdict(f) | {"wakeups_per_s": f.wakeups_per_s} for f in results], indent=2)
            + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
