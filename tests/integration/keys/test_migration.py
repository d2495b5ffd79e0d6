"""Moving keys out of files into a SoftHSM2 token and swtpm, and killing the move at random times.

Every key keeps working across the move: a module key derived from the device identity key (as
`firmware.identity.modules` derives them) gives the same HMACs, a key pair's signatures verify
with its old public key, data sealed before opens after, and handles issued before still verify
(the handle-validation key moves too). Keys on the token or in the TPM are refused.

The kill test runs the migration in a child process (`python -m` this module) over the same data
dir, token and TPM, SIGKILLs it after a random delay spread over the migration's measured duration,
then opens the key service again in the test: every key must work and give the same results, and
a migration run to the end must leave each key in the target only.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from firmware.identity.modules import derivation_label
from firmware.keys.backend import KeyBackend, KeyKind, SignAlgorithm
from firmware.keys.errors import KeyNotFound
from firmware.keys.file import FileBackend
from firmware.keys.handles import HANDLE_VALIDATION_KEY
from firmware.keys.locations import KeyLocations
from firmware.keys.migration import KeyCannotMove, KeyMigration, MoveOutcome
from firmware.keys.registry import BackendRegistry
from firmware.keys.service import KeyService
from firmware.store.state import StateStore
from tests.unit.keys.conftest import ThreadExecutor

REPO = Path(__file__).resolve().parents[3]
LABEL = derivation_label("tempSensor", "gen-1")
DATA = b"the same digest before and after the move"
IV = b"\x07" * 12
KEYS = ("device-identity", "edge-ca", "sealing", HANDLE_VALIDATION_KEY)

_tokens = itertools.count()


@dataclass(frozen=True)
class Devices:
    """Where the backends keep their keys; crosses to the child process as JSON."""

    data_dir: str
    module: str = ""
    token_label: str = ""
    pin: str = ""
    tcti: str = ""


def key_service(devices: Devices, executor: ThreadExecutor) -> KeyService:
    """A key service over file (the default), the token and the TPM of `devices`."""
    data = Path(devices.data_dir)

    def pkcs11() -> KeyBackend:
        from firmware.keys.pkcs11 import Pkcs11Backend

        return Pkcs11Backend(devices.module, token_label=devices.token_label, pin=devices.pin)

    def tpm() -> KeyBackend:
        from firmware.keys.tpm import TpmBackend

        return TpmBackend(devices.tcti, data / "tpm-keys")

    factories = {"file": lambda: FileBackend(data / "keys"), "pkcs11": pkcs11, "tpm": tpm}
    registry = BackendRegistry("file", factories)
    locations = KeyLocations(StateStore(data / "state"))
    return KeyService(registry, executor, locations=locations)


@dataclass(frozen=True)
class Expected:
    """What the keys gave before the move, and handles issued then."""

    device: str  # a handle of the device identity key
    module_digest: bytes
    public_der: bytes  # edge-ca's public key
    sealed: bytes  # DATA sealed by `sealing`


async def make_keys(keys: KeyService) -> Expected:
    device = await keys.create_key("device-identity", KeyKind.HMAC_SHA256)
    pair = await keys.create_key_pair("edge-ca", KeyKind.EC_P256)
    aes = await keys.create_key("sealing", KeyKind.AES_256)
    return Expected(
        device=str(device),
        module_digest=await _module_digest(keys, device),
        public_der=await keys.public_key(pair),
        sealed=await keys.encrypt(aes, IV, b"", DATA),
    )


async def _module_digest(keys: KeyService, device) -> bytes:
    module = await keys.derive(device, LABEL)
    return await keys.sign(module, SignAlgorithm.HMAC_SHA256, DATA)


async def check_keys(keys: KeyService, expected: Expected) -> None:
    """Every key works and gives what it gave before, by name and by an old handle."""
    assert await _module_digest(keys, expected.device) == expected.module_digest
    assert await _module_digest(keys, await keys.load("device-identity")) == expected.module_digest
    pair = await keys.load("edge-ca")
    assert await keys.public_key(pair) == expected.public_der
    signature = await keys.sign(pair, SignAlgorithm.ECDSA_SHA256, DATA)
    public = serialization.load_der_public_key(expected.public_der)
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(signature, DATA, ec.ECDSA(hashes.SHA256()))
    aes = await keys.load("sealing")
    assert await keys.decrypt(aes, IV, b"", expected.sealed) == DATA


async def holders(keys: KeyService) -> dict[str, list[str]]:
    """Key name -> the backends holding a copy, for the keys of this test."""
    found: dict[str, list[str]] = {name: [] for name in KEYS}
    for info in (await keys.list()).keys:
        if info.key_id in found:
            found[info.key_id].append(info.backend)
    return {name: sorted(backends) for name, backends in found.items()}


async def migrate_all(keys: KeyService, executor: ThreadExecutor, target: str):
    migration = KeyMigration(keys, executor)
    return await migration.apply(await migration.plan(None, target))


@pytest.fixture
def executor():
    pool = ThreadExecutor()
    yield pool
    pool.close()


@pytest.fixture
def token_devices(softhsm, tmp_path) -> Devices:
    token = softhsm.new_token(f"migration-{next(_tokens)}")
    return Devices(str(tmp_path), softhsm.module, token.label, token.user_pin)


@pytest.fixture
def tpm_devices(swtpm, tmp_path) -> Iterator[Devices]:
    yield Devices(str(tmp_path), tcti=swtpm.tcti)
    # Child processes end without flushing what they loaded (swtpm has no resource manager):
    # power-cycle it so the TPM tests after this one find free object slots.
    swtpm.restart()


def run(coro):
    return asyncio.run(coro)


@pytest.mark.parametrize(
    "target",
    [
        pytest.param("pkcs11", marks=pytest.mark.softhsm),
        pytest.param("tpm", marks=pytest.mark.swtpm),
    ],
)
def test_keys_moved_out_of_files_give_the_same_results_and_leave_no_copy(request, target, executor):
    devices = request.getfixturevalue("token_devices" if target == "pkcs11" else "tpm_devices")

    async def scenario():
        keys = key_service(devices, executor)
        await keys.start()
        expected = await make_keys(keys)
        record = keys.locations.items()

        migration = KeyMigration(keys, executor)
        plan = await migration.plan(None, target)
        assert sorted(m.key_id for m in plan.moves) == sorted(KEYS)
        assert all(m.source == "file" and m.exportable for m in plan.moves)
        assert keys.locations.items() == record  # the dry run changed nothing
        assert await holders(keys) == {name: ["file"] for name in KEYS}

        results = await migration.apply(plan)
        assert {r.move.key_id: r.outcome for r in results} == dict.fromkeys(KEYS, MoveOutcome.MOVED)
        assert await holders(keys) == {name: [target] for name in KEYS}
        await check_keys(keys, expected)
        await keys.close()

        again = key_service(devices, executor)  # a restart: the record and the target hold
        await again.start()
        await check_keys(again, expected)
        assert again.locations.items() == dict.fromkeys(KEYS, target)
        await again.close()

    run(scenario())


@pytest.mark.softhsm
@pytest.mark.swtpm
def test_keys_on_the_token_or_in_the_tpm_are_refused_with_what_to_do(
    token_devices, swtpm, executor
):
    devices = Devices(**{**asdict(token_devices), "tcti": swtpm.tcti})

    async def scenario():
        keys = key_service(devices, executor)
        await keys.start()
        await make_keys(keys)
        await migrate_all(keys, executor, "pkcs11")
        tpm = await keys.backend("tpm")
        await executor.run(tpm.create, "tpm-identity", KeyKind.HMAC_SHA256)
        await keys.relocate("tpm-identity", "tpm")
        migration = KeyMigration(keys, executor)

        with pytest.raises(KeyCannotMove) as token_refusal:
            await migration.plan(["device-identity"], "file")
        assert "cannot leave pkcs11: it is non-extractable" in token_refusal.value.message
        assert "re-provision instead" in token_refusal.value.hint
        with pytest.raises(KeyCannotMove) as pair_refusal:
            await migration.plan(["edge-ca"], "tpm")
        assert "re-issue instead" in pair_refusal.value.hint
        with pytest.raises(KeyCannotMove) as tpm_refusal:
            await migration.plan(["tpm-identity"], "pkcs11")
        assert "cannot leave tpm: its private part is wrapped" in tpm_refusal.value.message
        assert keys.locations.backend_of("tpm-identity") == "tpm"
        await keys.close()

    run(scenario())


# --- killed at random instants -----------------------------------------------------------------

KILL_RUNS = {"pkcs11": 50, "tpm": 10}


def _child_command(devices: Devices, target: str) -> list[str]:
    module = "tests.integration.keys.test_migration"
    return [sys.executable, "-m", module, json.dumps(asdict(devices)), target]


def _child_main(devices_json: str, target: str) -> None:
    """The child: open the key service, plan every key to `target`, say "ready", apply."""
    devices = Devices(**json.loads(devices_json))
    executor = ThreadExecutor()

    async def main() -> None:
        keys = key_service(devices, executor)
        await keys.start()
        migration = KeyMigration(keys, executor)
        plan = await migration.plan(None, target)
        print("ready", flush=True)
        results = await migration.apply(plan)
        assert all(r.outcome is MoveOutcome.MOVED for r in results), results
        print("done", flush=True)
        await keys.close()

    asyncio.run(main())
    executor.close()


def _start_child(devices: Devices, target: str) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        _child_command(devices, target),
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        env=os.environ,
    )
    assert child.stdout is not None
    line = child.stdout.readline()
    if line != "ready\n":
        with child:
            child.kill()
        pytest.fail(f"the migration child did not start (said {line!r})")
    return child


def _measure(devices: Devices, target: str) -> float:
    """Seconds from "ready" to "done" of one whole migration in a child."""
    with _start_child(devices, target) as child:
        began = time.monotonic()
        assert child.stdout is not None
        assert child.stdout.readline() == "done\n"
        took = time.monotonic() - began
        assert child.wait(timeout=30) == 0
        return took


def _clear_target(devices: Devices, target: str, executor: ThreadExecutor) -> None:
    """Delete this test's keys from the target, so the next run starts with them in files only."""

    async def clear() -> None:
        keys = key_service(devices, executor)
        backend = await keys.backend(target)
        for name in KEYS:
            with contextlib.suppress(KeyNotFound):
                await executor.run(backend.delete, name)
        await keys.close()

    run(clear())


@pytest.mark.parametrize(
    "target",
    [
        pytest.param("pkcs11", marks=pytest.mark.softhsm),
        pytest.param("tpm", marks=pytest.mark.swtpm),
    ],
)
def test_a_migration_killed_at_any_instant_leaves_every_key_working(
    request, target, tmp_path, executor
):
    base = request.getfixturevalue("token_devices" if target == "pkcs11" else "tpm_devices")
    # A killed process's TPM objects stay loaded in swtpm (the kernel's resource manager would
    # flush them with its file descriptor): power-cycle it after each kill instead.
    recover = request.getfixturevalue("swtpm").restart if target == "tpm" else lambda: None
    template = tmp_path / "template"
    devices = Devices(**{**asdict(base), "data_dir": str(tmp_path / "run")})

    async def prepare() -> Expected:
        keys = key_service(Devices(**{**asdict(base), "data_dir": str(template)}), executor)
        await keys.start()
        expected = await make_keys(keys)
        await keys.close()
        return expected

    def reset() -> None:
        shutil.rmtree(devices.data_dir, ignore_errors=True)
        shutil.copytree(template, devices.data_dir)
        _clear_target(devices, target, executor)

    expected = run(prepare())
    reset()
    durations = []
    for _ in range(3):
        reset()
        durations.append(_measure(devices, target))
        recover()
    duration = statistics.median(durations)
    seed = random.randrange(2**32)
    draw = random.Random(seed)
    states: list[tuple[int, int]] = []  # per run: keys still in files, keys in the target

    async def after_kill() -> None:
        keys = key_service(devices, executor)
        await keys.start()
        await check_keys(keys, expected)
        record = keys.locations.items()
        states.append(  # how many keys the record had switched when the child was killed
            (
                sum(record[name] == "file" for name in KEYS),
                sum(record[name] == target for name in KEYS),
            )
        )
        results = await migrate_all(keys, executor, target)
        assert all(r.outcome is not MoveOutcome.FAILED for r in results), results
        assert await holders(keys) == {name: [target] for name in KEYS}
        await check_keys(keys, expected)
        await keys.close()

    for attempt in range(KILL_RUNS[target]):
        reset()
        with _start_child(devices, target) as child:
            time.sleep(draw.uniform(0, duration * 1.5))
            child.send_signal(signal.SIGKILL)
        recover()
        try:
            run(after_kill())
        except BaseException:
            print(f"run {attempt} (seed {seed}, duration {duration:.3f}s) left a broken key")
            raise

    assert any(in_target > 0 for _, in_target in states), states  # some kills came after a switch
    assert any(in_files > 0 for in_files, _ in states), states  # and some before one


if __name__ == "__main__":
    _child_main(sys.argv[1], sys.argv[2])
