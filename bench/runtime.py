"""Container orchestration through edgekeeper beside the docker CLI, same engine, same run.

Starts a private dockerd and `edgekeeper run` (agent: a sleeping busybox), then measures:
- the full life of N containers (create, start, stop, remove), once with the docker CLI (one
  command per step, as a script would) and once through the management API (POST /modules,
  POST /modules/{name}/stop, DELETE /modules/{name}, each step timed until the engine reports it
  done: the "start", "die" and "destroy" events), and prints the ratio API / CLI;
- `GET /modules` requests per second on the management socket (one connection per request, as
  the CLI makes them), with the agent and K modules running;
- the daemon's CPU use while idle (utime+stime from /proc over a quiet period).
This is a benchmark, not a test: it asserts nothing.

    .venv/bin/python bench/runtime.py [--containers 10] [--seconds 3] [--idle 10] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from firmware.api.client import ApiClient  # noqa: E402
from firmware.runtime.engine import DockerEngine  # noqa: E402
from firmware.runtime.spec import MODULE_LABEL  # noqa: E402
from tests.integration.runtime.running_daemon import DaemonProcess, write_config  # noqa: E402
from tests.peers.sim import Dockerd, busybox_rootfs  # noqa: E402

IMAGE = "edgekeeper-bench/busybox:latest"
# Exits on SIGTERM at once, so a stop measures the orchestration, not a stop timeout.
COMMAND = ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.1; done"]
OPTIONS = {"StopTimeout": 1, "HostConfig": {"NetworkMode": "none"}, "Cmd": COMMAND}


def docker_cli_cycle(dockerd: Dockerd, count: int) -> float:
    started = time.perf_counter()
    for index in range(count):
        name = f"bench-cli-{index}-{uuid.uuid4().hex[:4]}"
        dockerd.docker(
            "create", "--name", name, "--network", "none", "--stop-timeout", "1", IMAGE, *COMMAND
        )
        dockerd.docker("start", name)
        dockerd.docker("stop", "-t", "1", name)
        dockerd.docker("rm", name)
    return time.perf_counter() - started


async def api_cycle(daemon: DaemonProcess, engine: DockerEngine, count: int) -> float:
    client = ApiClient(daemon.uri)
    elapsed = 0.0
    for index in range(count):
        name = f"bench-api-{index}-{uuid.uuid4().hex[:4]}"
        body = {
            "name": name,
            "type": "docker",
            "imagePullPolicy": "never",
            "status": "running",
            "config": {"settings": {"image": IMAGE, "createOptions": OPTIONS}},
        }
        async with engine.subscribe({MODULE_LABEL: name}) as events:
            events = aiter(events)
            started = time.perf_counter()
            await client.request("POST", "/modules", body=body)
            await _until(events, "start")
            await client.request("POST", f"/modules/{name}/stop")
            await _until(events, "die")
            await client.request("DELETE", f"/modules/{name}")
            await _until(events, "destroy")
            elapsed += time.perf_counter() - started
    return elapsed


async def _until(events, action: str) -> None:
    async for event in events:
        if event.get("Action") == action:
            return


async def requests_per_second(daemon: DaemonProcess, seconds: float) -> float:
    client = ApiClient(daemon.uri)
    done, deadline = 0, time.perf_counter() + seconds
    started = time.perf_counter()
    while time.perf_counter() < deadline:
        await client.request("GET", "/modules")
        done += 1
    return done / (time.perf_counter() - started)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def deploy_background(daemon: DaemonProcess, modules: int) -> None:
    doc = {
        "modules": {
            f"bench-idle-{i}": {
                "imagePullPolicy": "never",
                "settings": {"image": IMAGE, "createOptions": OPTIONS},
            }
            for i in range(modules)
        }
    }
    await ApiClient(daemon.uri).request("POST", "/deployments", body=doc)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        answer = (await ApiClient(daemon.uri).request("GET", "/modules")).json()
        states = [m["status"]["runtimeStatus"]["status"] for m in answer["modules"]]
        if states.count("running") == modules + 1:
            return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"modules did not all run: {states}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--containers", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--idle", type=float, default=10.0)
    parser.add_argument(
        "--modules", type=int, default=3, help="modules running during GET /modules"
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="ekb-", dir="/tmp"))
    dockerd = Dockerd(root / "d")
    daemon = None
    try:
        dockerd.start()
        dockerd.import_image(busybox_rootfs(root / "rootfs"), IMAGE)
        (root / "k").mkdir()
        config = write_config(root / "k", str(dockerd.socket), "bench-agent", IMAGE)
        daemon = DaemonProcess(config)
        daemon.start()
        engine = DockerEngine(str(dockerd.socket))

        docker_cli_cycle(dockerd, 1)  # warm both paths once
        asyncio.run(api_cycle(daemon, engine, 1))
        cli_s = docker_cli_cycle(dockerd, args.containers)
        api_s = asyncio.run(api_cycle(daemon, engine, args.containers))
        asyncio.run(deploy_background(daemon, args.modules))
        rps = asyncio.run(requests_per_second(daemon, args.seconds))
        pid = daemon.process.pid
        time.sleep(2)
        before, started = cpu_seconds(pid), time.monotonic()
        time.sleep(args.idle)
        idle_pct = 100 * (cpu_seconds(pid) - before) / (time.monotonic() - started)
    finally:
        if daemon is not None:
            daemon.stop()
        dockerd.docker("rm", "-f", *dockerd.docker("ps", "-aq").stdout.split(), check=False)
        dockerd.stop()
        shutil.rmtree(root, ignore_errors=True)

    result = {
        "containers": args.containers,
        "docker_cli_s_per_container": cli_s / args.containers,
        "management_api_s_per_container": api_s / args.containers,
        "ratio_api_over_cli": api_s / cli_s,
        "get_modules_per_s": rps,
        "modules_listed": args.modules + 1,
        "idle_cpu_percent": idle_pct,
        "idle_seconds": args.idle,
    }
    print(f"create+start+stop+remove, {args.containers} containers:")
    print(f"  docker CLI      {1000 * cli_s / args.containers:8.1f} ms per container")
    print(f"  management API  {1000 * api_s / args.containers:8.1f} ms per container")
    print(f"  ratio API/CLI   {api_s / cli_s:8.2f}  (aim: <= 1.10)")
    print(f"GET /modules ({args.modules + 1} modules): {rps:.0f} requests/s")
    print(f"daemon idle CPU over {args.idle:.0f} s: {idle_pct:.3f} %")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
