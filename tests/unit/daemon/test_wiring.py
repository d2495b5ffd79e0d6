"""The one wiring place: the catalogue of services, every route registered once, the workload
hook outliving service restarts, and start-up staying light."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from firmware.api.model import ApiRequest
from firmware.api.versions import LATEST
from firmware.config import load_config
from firmware.config.schema import Config, Console
from firmware.daemon.app import Daemon
from firmware.daemon.service import DaemonContext
from firmware.daemon.status import DaemonStatus
from firmware.daemon.wiring import Wiring
from tests.peers.waiting import wait_until_async

REPO = Path(__file__).resolve().parents[3]
# Backend libraries, and stdlib modules that cost megabytes for little (tempfile pulls in shutil,
# random and the bz2/lzma/zlib modules: 2 MB of idle RSS).
HEAVY = (
    "cryptography",
    "tpm2_pytss",
    "serial",
    "firmware.console.service",
    "tempfile",
    "shutil",
    "lzma",
    "bz2",
)
MGMT = frozenset({"mgmt", "console"})
WORKLOAD = frozenset({"workload"})
GENID = "/modules/{name}/genid/{genid}"
ROUTES = {
    ("GET", "/daemon/status", MGMT),
    ("PUT", "/daemon/log-level", MGMT),
    ("GET", "/keys", MGMT),
    ("POST", "/keys/migrate", MGMT),
    ("GET", "/certificates", MGMT),
    ("POST", "/certificates/{name}/renew", MGMT),
    ("GET", "/modules", MGMT),
    ("POST", "/modules", MGMT),
    ("GET", "/modules/{name}", MGMT),
    ("PUT", "/modules/{name}", MGMT),
    ("DELETE", "/modules/{name}", MGMT),
    ("POST", "/modules/{name}/start", MGMT),
    ("POST", "/modules/{name}/stop", MGMT),
    ("POST", "/modules/{name}/restart", MGMT),
    ("POST", "/modules/{name}/prepareupdate", MGMT),
    ("GET", "/modules/{name}/logs", MGMT),
    ("GET", "/systeminfo", MGMT),
    ("GET", "/systeminfo/resources", MGMT),
    ("GET", "/systeminfo/supportbundle", MGMT),
    ("POST", "/device/reprovision", MGMT),
    ("GET", "/system/status", MGMT),
    ("GET", "/system/logs", MGMT),
    ("POST", "/deployments", MGMT),
    ("GET", "/identities", MGMT),
    ("POST", "/identities", MGMT),
    ("GET", "/identities/{name}", MGMT),
    ("PUT", "/identities/{name}", MGMT),
    ("DELETE", "/identities/{name}", MGMT),
    ("GET", "/workload/sockets", MGMT),
    ("POST", f"{GENID}/sign", WORKLOAD),
    ("POST", f"{GENID}/encrypt", WORKLOAD),
    ("POST", f"{GENID}/decrypt", WORKLOAD),
    ("POST", f"{GENID}/certificate/server", WORKLOAD),
    ("POST", "/modules/{name}/certificate/identity", WORKLOAD),
    ("GET", "/trust-bundle", WORKLOAD),
    ("GET", "/manifest-trust-bundle", WORKLOAD),
}

MakeContext = Callable[[Config], DaemonContext]


def request(method: str, path: str) -> ApiRequest:
    return ApiRequest(method, path, query={"api-version": LATEST})


@pytest.fixture
def wiring(daemon_context: MakeContext) -> Wiring:
    return Wiring(daemon_context(Config(hostname="gw")))


def test_console_enabled_only_with_a_device(wiring: Wiring) -> None:
    names = [e.name for e in wiring.enabled(Config(hostname="gw", console=Console("none")))]
    assert names == ["api", "keys", "identity", "certs", "runtime", "workload"]
    with_console = Config(hostname="gw", console=Console("pty"))
    assert [e.name for e in wiring.enabled(with_console)] == [
        "api",
        "console",
        "keys",
        "identity",
        "certs",
        "runtime",
        "workload",
    ]


def test_entries_are_unique_and_name_real_sections(wiring: Wiring) -> None:
    names = [entry.name for entry in wiring.catalogue]
    assert len(names) == len(set(names))
    config = Config(hostname="gw")
    for entry in wiring.catalogue:
        assert entry.sections, f"{entry.name}: a reload could never restart it"
        for section in entry.sections:
            assert hasattr(config, section), f"{entry.name}: no config section {section!r}"


def test_section_changed(wiring: Wiring) -> None:
    (console,) = [entry for entry in wiring.catalogue if entry.name == "console"]
    old = Config(hostname="gw", console=Console("pty"))
    assert not console.section_changed(old, Config(hostname="other", console=Console("pty")))
    assert console.section_changed(old, Config(hostname="gw", console=Console("pty", 9600)))


def test_a_reload_that_refuses_elevation_restarts_the_runtime(wiring: Wiring) -> None:
    (runtime,) = [entry for entry in wiring.catalogue if entry.name == "runtime"]
    allowed = Config(hostname="gw")
    assert runtime.section_changed(
        allowed, Config(hostname="gw", allow_elevated_docker_permissions=False)
    )


def test_created_services_carry_their_entry_name_and_fill_the_directory(
    wiring: Wiring,
) -> None:
    ctx = wiring.ctx
    for entry in wiring.enabled(ctx.config):
        service = entry.create(ctx)
        assert service.name == entry.name
        assert getattr(ctx.services, entry.name) is service


def test_register_routes_registers_every_route_once(wiring: Wiring) -> None:
    ctx = wiring.ctx
    wiring.register_routes(DaemonStatus(ctx, lambda: "running"))
    registered = [(r.method, r.pattern, r.listeners) for r in ctx.router.routes()]
    assert len(registered) == len(set(registered)), "a route registered twice"
    assert set(registered) == ROUTES
    with pytest.raises(ValueError, match="already registered"):
        wiring.register_routes(DaemonStatus(ctx, lambda: "running"))


def write_config(path: Path, root: Path, *, hostname: str, console: str, network: str) -> Path:
    path.write_text(
        f'hostname = "{hostname}"\n\n'
        f'[paths]\ndata_dir = "{root}/data"\nrun_dir = "{root}/run"\n\n'
        f'[console]\ndevice = "{console}"\n\n'
        f'[runtime]\nuri = "unix://{root}/no-engine.sock"\nnetwork = "{network}"\n'
    )
    return path


def workload_ready(daemon: Daemon) -> bool:
    workload = daemon.services.workload
    return workload is not None and workload.describe()["ready"] is True


async def test_reload_registers_nothing_new_and_the_workload_hook_outlives_it(
    tmp_path: Path,
    make_daemon: Callable[..., Daemon],
    serving: Callable[[Daemon], contextlib.AbstractAsyncContextManager[Daemon]],
) -> None:
    (tmp_path / "run").mkdir()
    config_file = write_config(
        tmp_path / "config.toml", tmp_path, hostname="gw1", console="none", network="a"
    )
    daemon = make_daemon(load_config(config_file), config_file=config_file)
    async with serving(daemon):
        await wait_until_async(
            lambda: workload_ready(daemon), timeout_s=10, what="the workload service"
        )
        assert daemon.wiring is not None and daemon.ctx is not None
        hook = daemon.wiring.workload_hook
        router = daemon.ctx.router
        routes = router.routes()
        assert {(r.method, r.pattern, r.listeners) for r in routes} == ROUTES
        before = daemon.services.require_runtime()
        assert before.reconciler is not None
        assert hook in before.reconciler._hooks
        api, keys = daemon.services.api, daemon.services.keys
        certs, workload = daemon.services.certs, daemon.services.workload

        write_config(config_file, tmp_path, hostname="gw2", console="pty", network="b")
        assert await daemon.reload()

        assert router.routes() == routes, "a reload must register no route"
        after = daemon.services.require_runtime()
        assert after is not before, "[runtime] changed: the service is rebuilt"
        assert after.reconciler is not None
        assert hook in after.reconciler._hooks, "the new reconciler must run the same hook"
        assert daemon.wiring.workload_hook is hook
        assert (daemon.services.api, daemon.services.keys) == (api, keys), "unchanged sections"
        assert daemon.services.certs is not certs and daemon.services.workload is not workload
        assert daemon.services.console is not None
        assert sorted(daemon.supervisor.names()) == [
            "api",
            "certs",
            "console",
            "identity",
            "keys",
            "runtime",
            "workload",
        ]
        await wait_until_async(
            lambda: workload_ready(daemon), timeout_s=10, what="the rebuilt workload service"
        )
        answer = await router.dispatch(request("GET", "/workload/sockets"))
        # The route reaches the rebuilt service: it has opened the agent's socket again.
        assert answer.status == 200
        (agent_socket,) = answer.json()["sockets"]
        assert (agent_socket["module"], agent_socket["listening"]) == ("edgeAgent", True)
        assert daemon.services.require_workload().sockets is not workload.sockets
        keys_answer = await router.dispatch(request("GET", "/keys"))
        assert keys_answer.status == 200, keys_answer.json()

        write_config(config_file, tmp_path, hostname="gw2", console="none", network="b")
        assert await daemon.reload()
        assert daemon.services.console is None and "console" not in daemon.supervisor.names()
        assert router.routes() == routes


# Builds the daemon's services in a fresh interpreter; prints which modules were loaded when.
PROBE = """
import io, json, sys
from firmware.daemon import app
after_app = sorted(sys.modules)
from firmware.config.schema import Config, Console
from firmware.daemon.lock import InstanceLock
from firmware.daemon.logs import LogControl
from firmware.daemon.status import DaemonStatus
from firmware.store.state import StateStore
root, device = sys.argv[1:3]
config = Config(hostname="gw", console=Console(device))
daemon = app.Daemon(None, None, config, LogControl(stream=io.StringIO()),
                    InstanceLock(root), StateStore(root), (False, False))
ctx = daemon._context()
wiring = app.Wiring(ctx)
wiring.register_routes(DaemonStatus(ctx, daemon.state))
created = [entry.create(ctx).name for entry in wiring.enabled(config)]
print(json.dumps({"app": after_app, "services": sorted(sys.modules), "created": created}))
"""


def loaded_modules(root: Path, console: str) -> dict[str, list[str]]:
    """`app`: modules after importing the daemon; `services`: after building every enabled
    service and route for a config whose console is `console`; `created`: the services."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(root), console],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    loaded: dict[str, list[str]] = json.loads(done.stdout)
    return loaded


def test_daemon_start_imports_no_backend_libraries(tmp_path: Path) -> None:
    loaded = loaded_modules(tmp_path, "none")
    assert loaded["created"] == ["api", "keys", "identity", "certs", "runtime", "workload"]

    def heavy(modules: list[str]) -> list[str]:
        return [m for m in modules if m.split(".")[0] in HEAVY or m in HEAVY]

    assert heavy(loaded["app"]) == [], "importing the daemon must not load backend libraries"
    assert heavy(loaded["services"]) == [], "a console-less start loaded backend libraries"


def test_the_console_loads_no_cli_front_end(tmp_path: Path) -> None:
    """The console runs the shared command table; the CLI's front end (its socket invoker and
    `run`) and the API client stay out of the daemon's memory."""
    loaded = loaded_modules(tmp_path, "pty")
    assert "console" in loaded["created"]
    unwanted = ("firmware.cli.frontend", "firmware.api.client")
    assert [m for m in loaded["services"] if m in unwanted] == []
