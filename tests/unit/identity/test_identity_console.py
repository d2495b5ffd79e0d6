"""`identity list|show|sockets` on the console: the shared command table, in-process."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from firmware.api.workload.sockets import ModuleSockets
from firmware.cli.commands import InProcessInvoker, execute
from tests.unit.api.workload.workload_rig import workload_rig


def test_identity_commands_in_process(tmp_path: Path) -> None:
    async def scenario() -> list[str]:
        async with workload_rig(tmp_path) as rig:
            invoker = InProcessInvoker(rig.router)
            empty = await execute(["identity", "list"], invoker)
            created = await rig.identities.create("tempSensor", "me")
            listed = await execute(["identity", "list"], invoker)
            shown = await execute(["identity", "show", "tempSensor"], invoker)
            missing = await execute(["identity", "show", "ghost"], invoker)
            assert missing.exit_code == 1
            return [empty.text, listed.text, shown.text, missing.text, created.generation_id]

    empty, listed, shown, missing, genid = asyncio.run(scenario())
    assert empty == "no module identities"
    assert listed.splitlines()[0].split() == ["MODULE", "GENERATION", "MANAGED", "BY", "AUTH"]
    assert listed.splitlines()[1].split() == ["tempSensor", genid, "me", "sas"]
    assert shown.splitlines() == [
        "module: tempSensor",
        f"generation: {genid}",
        "managed by: me",
        "auth: sas",
    ]
    assert "no module identity 'ghost'" in missing


def test_socket_status_lists_open_module_sockets(tmp_path: Path) -> None:
    run_dir = Path("/tmp") / f"ekst{tmp_path.name[-8:]}"

    async def scenario() -> list[dict]:
        async with workload_rig(tmp_path) as rig:
            sockets = ModuleSockets(run_dir, rig.router)
            try:
                directory = await sockets.open("m1", "m1")
                path = directory / "workload.sock"
                assert path.is_socket() and oct(path.stat().st_mode & 0o777) == "0o666"
                assert oct(directory.stat().st_mode & 0o777) == "0o755"
                assert oct(directory.parent.stat().st_mode & 0o777) == "0o700"
                assert not (directory / "mgmt.sock").exists()
                again = await asyncio.gather(*(sockets.open("m3", "m3") for _ in range(3)))
                assert again == [run_dir / "mnt" / "m3"] * 3
                await sockets.close("m3")
                agent = await sockets.open("agent", "$edgeAgent", management=True)
                assert (agent / "mgmt.sock").is_socket()
                await sockets.close("agent")
                await sockets.open("m2", "m2")
                await sockets.close("m2")
                assert not (run_dir / "mnt" / "m2").exists()
                return [entry.document() for entry in sockets.status()]
            finally:
                await sockets.close_all()

    try:
        status = asyncio.run(scenario())
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    assert status == [
        {
            "module": "m1",
            "path": str(run_dir / "mnt" / "m1" / "workload.sock"),
            "listening": True,
            "connections": 0,
        }
    ]
