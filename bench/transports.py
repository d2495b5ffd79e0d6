"""TPM round trips and key-service rates over each of edgekeeper's transports, beside swtpm's own
socket in the same run, and what each transport costs per command.

One private swtpm serves every subject, one after another (never two connections at once):

- `swtpm`: tpm2-tss's own swtpm TCTI (`swtpm://`), the baseline every ratio is taken against;
- `mssim+socket`: edgekeeper's serial-frames transport straight to swtpm's server port (the Python
  TCTI and the framing, no simulator in between);
- `mssim+serial`: the same transport over a pseudo-terminal, relayed to swtpm by
  tests/peers/serial_tpm.py;
- `tis-i2c`, `tis-spi`: the TIS drivers over a bus socket, served by the register-level simulators
  (tests/peers/i2c_tpm.py, spi_tpm.py) that execute each command on swtpm.

For each: raw round trips (a bare TPM2_GetRandom(8) through the transport's `exchange`; for the
baseline, the same bytes on a persistent TCP connection to swtpm), TPM2_GetRandom(8) through ESAPI
and `TpmConnection.run`, and ECDSA-P256 signatures and HMAC-SHA256 per second through `KeyService`
over `TpmBackend` (the daemon's executor). Each rate is printed beside the baseline's as a ratio.

Per GetRandom it also reports the transport's own overhead (its time per command minus the
baseline's), split where the simulator can be watched: the simulator's time inside its bus
transactions and its round trip to swtpm (a new TCP connection per command, swtpm_raw.py).
The simulators run in this process and share its GIL, so a simulated bus's figures are an upper
bound on the driver's own cost. A real bus is dominated by bus time instead: the bytes each command
moves on the bus are counted in the simulator, and the time they would take at 100 and 400 kHz
(I²C, 9 clocks a byte plus start and stop), 10 MHz (SPI) and 115200 baud (serial, 8N1) is computed
from them, not measured. Bus time omits guard times, clock stretching and the TPM's execution.

This is a benchmark, not a test: it asserts nothing about the figures.

    .venv/bin/python bench/transports.py [--seconds 2] [--only tis-i2c,tis-spi] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import socket
import struct
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from firmware.executor import BoundedExecutor  # noqa: E402
from firmware.keys.backend import KeyKind, SignAlgorithm  # noqa: E402
from firmware.keys.registry import BackendRegistry  # noqa: E402
from firmware.keys.service import KeyService  # noqa: E402
from firmware.keys.tpm import TpmBackend  # noqa: E402
from firmware.tpm.connection import TpmConnection  # noqa: E402
from firmware.transports.address import parse_device_url  # noqa: E402
from firmware.transports.registry import open_transport  # noqa: E402
from firmware.transports.tis import TisTransport  # noqa: E402
from firmware.transports.transport import Transport  # noqa: E402
from tests.peers.i2c_tpm import I2cMessage, I2cTpm  # noqa: E402
from tests.peers.serial_tpm import SerialTpm  # noqa: E402
from tests.peers.sim import Swtpm  # noqa: E402
from tests.peers.spi_tpm import SpiTpm  # noqa: E402
from tests.peers.swtpm_raw import SwtpmRaw  # noqa: E402

BASELINE = "swtpm"
TRANSPORTS = (BASELINE, "mssim+socket", "mssim+serial", "tis-i2c", "tis-spi")
GET_RANDOM_8 = bytes.fromhex("8001 0000000c 0000017b 0008")  # TPM2_GetRandom(8), no sessions
RAW, RANDOM, ECDSA, HMAC = "raw round trip", "getrandom", "ecdsa-p256 sign", "hmac-sha256"
OPERATIONS = (RAW, RANDOM, ECDSA, HMAC)
DATA = os.urandom(64)
EC_KEY, MAC_KEY = "bench-ec", "bench-mac"
COMMAND_TIMEOUT_S = 10.0  # a bench that stalls says so instead of waiting out the default 120 s
I2C_HZ = (100_000, 400_000)
SPI_HZ = 10_000_000
SERIAL_BAUD = 115_200
# mssim frames: code, locality and size before a command; size before and a trailer after a response
SERIAL_FRAMING = 9 + 8
GIL_NOTE = (
    "the simulators run in this process (one GIL): simulated-bus overheads are an upper bound on "
    "the driver's own cost; bus times are computed from the bytes counted, not measured"
)


# --- what the simulators saw -----------------------------------------------------------------


@dataclass
class Tally:
    """Counts from the simulators since the last `clear`: their round trips to swtpm, and the bus
    transactions they served (an I2C_RDWR call, an SPI_IOC_MESSAGE) with the time spent in them."""

    tpm_commands: int = 0
    tpm_seconds: float = 0.0
    command_bytes: int = 0
    response_bytes: int = 0
    bus_transactions: int = 0
    bus_seconds: float = 0.0
    bus_bytes: int = 0  # I²C: address and data bytes; SPI: bytes clocked (headers, wait states)
    bus_clocks: int = 0  # I²C: 9 per byte, one per (repeated) start and the stop; SPI: 8 per byte
    pause_seconds: float = 0.0  # the TIS driver's polling pauses (raw round trips only)

    def clear(self) -> None:
        for name, value in asdict(Tally()).items():
            setattr(self, name, value)

    def snapshot(self) -> Tally:
        return Tally(**asdict(self))


TALLY = Tally()


@contextlib.contextmanager
def swtpm_round_trips_counted() -> Iterator[None]:
    """Time every command a simulator relays to swtpm (`SwtpmRaw.execute`, on any thread)."""
    original = SwtpmRaw.execute

    def execute(self: SwtpmRaw, command: bytes) -> bytes:
        started = time.perf_counter()
        response = original(self, command)
        TALLY.tpm_seconds += time.perf_counter() - started
        TALLY.tpm_commands += 1
        TALLY.command_bytes += len(command)
        TALLY.response_bytes += len(response)
        return response

    SwtpmRaw.execute = execute  # type: ignore[method-assign]
    try:
        yield
    finally:
        SwtpmRaw.execute = original  # type: ignore[method-assign]


def count_i2c(device: I2cTpm) -> None:
    transact = device.transact

    def counted(messages: list[I2cMessage]) -> tuple[int, bytes]:
        started = time.perf_counter()
        try:
            return transact(messages)
        finally:
            TALLY.bus_seconds += time.perf_counter() - started
            TALLY.bus_transactions += 1
            moved = sum(1 + m.length for m in messages)  # the address byte, then the data
            TALLY.bus_bytes += moved
            TALLY.bus_clocks += 9 * moved + len(messages) + 1

    device.transact = counted  # type: ignore[method-assign]


def count_spi(device: SpiTpm) -> None:
    message = device.message

    def counted(transfers: list[tuple[bytes, bool]]) -> tuple[int, bytes]:
        started = time.perf_counter()
        try:
            return message(transfers)
        finally:
            TALLY.bus_seconds += time.perf_counter() - started
            TALLY.bus_transactions += 1
            moved = sum(len(tx) for tx, _cs_change in transfers)
            TALLY.bus_bytes += moved
            TALLY.bus_clocks += 8 * moved

    device.message = counted  # type: ignore[method-assign]


# --- the subjects --------------------------------------------------------------------------


@dataclass(frozen=True)
class Subject:
    """A transport to the run's swtpm: its device URL and the bus it is on ("" for none)."""

    name: str
    url: str
    bus: str


@contextlib.contextmanager
def subject(name: str, tpm: Swtpm, workdir: Path) -> Iterator[Subject]:
    """The transport `name` to `tpm`, with its simulator running (and counted) while in use."""
    if name == BASELINE:
        yield Subject(name, tpm.url, "")
    elif name == "mssim+socket":
        yield Subject(name, f"mssim+socket://{tpm.host}:{tpm.port}", "")
    elif name == "mssim+serial":
        line = SerialTpm(tpm)
        line.start()
        try:
            yield Subject(name, line.url, "serial")
        finally:
            line.stop()
    else:
        bus: I2cTpm | SpiTpm
        if name == "tis-i2c":
            bus = I2cTpm(workdir / "i2c.sock", tpm.host, tpm.port, tpm.ctrl_port)
            count_i2c(bus)
        else:
            bus = SpiTpm(workdir / "spi.sock", tpm.host, tpm.port, tpm.ctrl_port)
            count_spi(bus)
        bus.start()
        try:
            yield Subject(name, f"{name}://{bus.path}", name.removeprefix("tis-"))
        finally:
            bus.stop()
        if bus.errors:
            raise RuntimeError(f"the {name} simulator failed: {bus.errors}")


# --- measuring -----------------------------------------------------------------------------


@dataclass
class Sample:
    """`count` operations in `seconds`, and what the simulators saw meanwhile."""

    count: int
    seconds: float
    seen: Tally

    @property
    def rate(self) -> float:
        return self.count / self.seconds

    def per_op(self, value: float) -> float:
        return value / self.count


def measure_sync(call: Callable[[], object], seconds: float) -> Sample:
    call()  # warm: connections opened, objects loaded
    TALLY.clear()
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        call()
        count += 1
    return Sample(count, elapsed, TALLY.snapshot())


async def measure_async(call: Callable[[], Any], seconds: float) -> Sample:
    await call()
    TALLY.clear()
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        await call()
        count += 1
    return Sample(count, elapsed, TALLY.snapshot())


class RawSwtpm:
    """swtpm's server port on one kept TCP connection, bare TPM commands: the baseline's wire."""

    def __init__(self, tpm: Swtpm) -> None:
        self.sock = socket.create_connection((tpm.host, tpm.port), timeout=COMMAND_TIMEOUT_S)

    def exchange(self, command: bytes, deadline: float) -> bytes:
        self.sock.sendall(command)
        header = self._receive(10)
        (size,) = struct.unpack_from(">I", header, 2)
        return header + self._receive(size - 10)

    def _receive(self, size: int) -> bytes:
        data = bytearray()
        while len(data) < size:
            chunk = self.sock.recv(size - len(data))
            if not chunk:
                raise ConnectionResetError("swtpm closed the connection")
            data += chunk
        return bytes(data)

    def close(self) -> None:
        self.sock.close()


def paused(seconds: float) -> None:
    started = time.perf_counter()
    time.sleep(seconds)
    TALLY.pause_seconds += time.perf_counter() - started


def raw_round_trips(where: Subject, tpm: Swtpm, seconds: float) -> Sample:
    """Bare GetRandom(8) through the transport's `exchange` (no ESAPI, no TCTI); a TIS driver is
    given a sleep that counts its polling pauses."""
    transport: Transport | RawSwtpm
    if where.name == BASELINE:
        transport = RawSwtpm(tpm)
    else:
        transport = open_transport(parse_device_url(where.url))
        if isinstance(transport, TisTransport):
            transport = TisTransport(transport.port, sleep=paused)
    try:

        def call() -> None:
            response = transport.exchange(GET_RANDOM_8, time.monotonic() + COMMAND_TIMEOUT_S)
            if response[6:10] != b"\0\0\0\0":
                raise RuntimeError(f"GetRandom over {where.name} answered {response.hex()}")

        return measure_sync(call, seconds)
    finally:
        transport.close()


def esapi_round_trips(where: Subject, seconds: float) -> Sample:
    """TPM2_GetRandom(8) through ESAPI and `TpmConnection.run`, as the daemon sends commands."""
    connection = TpmConnection(where.url, command_timeout=COMMAND_TIMEOUT_S)
    try:
        return measure_sync(lambda: connection.run("random", lambda e: e.get_random(8)), seconds)
    finally:
        connection.close()


async def service_rates(where: Subject, keys: Path, seconds: float) -> dict[str, Sample]:
    """Signatures and MACs through `KeyService` over `TpmBackend` on this transport."""
    connection = TpmConnection(where.url, command_timeout=COMMAND_TIMEOUT_S)
    backend = TpmBackend(where.url, keys, connection=connection)
    executor = BoundedExecutor()
    service = KeyService(BackendRegistry("tpm", {"tpm": lambda: backend}), executor)
    try:
        await service.start()
        ec_handle = await service.load(EC_KEY)
        mac_handle = await service.load(MAC_KEY)
        return {
            ECDSA: await measure_async(
                lambda: service.sign(ec_handle, SignAlgorithm.ECDSA_SHA256, DATA), seconds
            ),
            HMAC: await measure_async(
                lambda: service.sign(mac_handle, SignAlgorithm.HMAC_SHA256, DATA), seconds
            ),
        }
    finally:
        await service.close()
        executor.shutdown()


# --- results -------------------------------------------------------------------------------


@dataclass
class Result:
    """One transport's figures: rates and their ratios to the baseline's; `per_command` in µs per
    GetRandom through ESAPI; `bus_per_op` what an operation moved on the bus."""

    name: str
    url: str
    bus: str
    rates: dict[str, float]
    ratios: dict[str, float] = field(default_factory=dict)
    per_command: dict[str, float | None] = field(default_factory=dict)
    bus_per_op: dict[str, dict[str, float]] = field(default_factory=dict)


def bus_figures(bus: str, sample: Sample) -> dict[str, float]:
    """Bytes an operation moved on the bus and the bus time they take, computed (not measured)."""
    seen = sample.seen
    if bus == "serial":
        moved = sample.per_op(seen.command_bytes + seen.response_bytes)
        moved += SERIAL_FRAMING * seen.tpm_commands / sample.count
        return {"bytes": moved, f"computed_us_{SERIAL_BAUD}_baud": moved * 10 / SERIAL_BAUD * 1e6}
    figures = {
        "transactions": sample.per_op(seen.bus_transactions),
        "bytes": sample.per_op(seen.bus_bytes),
    }
    clocks = sample.per_op(seen.bus_clocks)
    for hz in I2C_HZ if bus == "i2c" else (SPI_HZ,):
        figures[f"computed_us_{hz // 1000}_khz"] = clocks / hz * 1e6
    return figures


def bench_subject(name: str, tpm: Swtpm, workdir: Path, keys: Path, seconds: float) -> Result:
    with subject(name, tpm, workdir) as where:
        samples = {
            RAW: raw_round_trips(where, tpm, seconds),
            RANDOM: esapi_round_trips(where, seconds),
            **asyncio.run(service_rates(where, keys, seconds)),
        }
    result = Result(name, where.url, where.bus, {op: s.rate for op, s in samples.items()})
    random, seen = samples[RANDOM], samples[RANDOM].seen
    result.per_command = {
        "us_per_command": 1e6 / random.rate,
        "raw_us_per_command": 1e6 / samples[RAW].rate,
        "raw_polling_pauses_us": (
            samples[RAW].per_op(samples[RAW].seen.pause_seconds) * 1e6
            if where.bus in ("i2c", "spi")
            else None
        ),
        "simulator_bus_us": random.per_op(seen.bus_seconds) * 1e6
        if seen.bus_transactions
        else None,
        "simulator_to_swtpm_us": random.per_op(seen.tpm_seconds) * 1e6
        if seen.tpm_commands
        else None,
    }
    if where.bus:
        result.bus_per_op = {op: bus_figures(where.bus, samples[op]) for op in (RANDOM, ECDSA)}
    return result


def against_baseline(results: list[Result]) -> None:
    """Ratios to the baseline's rates, and each transport's overhead per GetRandom, split.

    The simulator's share is its time in bus transactions plus what its way to swtpm (a TCP
    connection per command) takes beyond the baseline's bare round trip on a kept connection; the
    driver's share is the rest of the overhead: the Python TCTI, the bus protocol, its polling
    waits and the socket hops (with the GIL shared with the simulator).
    """
    baseline = next(r for r in results if r.name == BASELINE)
    base = baseline.per_command
    for result in results:
        result.ratios = {op: result.rates[op] / baseline.rates[op] for op in OPERATIONS}
        figures = result.per_command
        whole, base_whole = figures["us_per_command"], base["us_per_command"]
        assert whole is not None and base_whole is not None
        figures["over_baseline_us"] = whole - base_whole
        if result.name == BASELINE:
            continue
        in_bus, to_swtpm, bare = (
            figures["simulator_bus_us"],
            figures["simulator_to_swtpm_us"],
            base["raw_us_per_command"],
        )
        assert bare is not None
        simulator = None
        if to_swtpm is not None:
            simulator = (in_bus or 0.0) + max(0.0, to_swtpm - bare)
        figures["simulator_share_us"] = simulator
        figures["driver_share_us"] = whole - base_whole - (simulator or 0.0)


# --- the run -------------------------------------------------------------------------------


def make_keys(tpm: Swtpm, keys: Path) -> None:
    setup = TpmBackend(tpm.url, keys)
    try:
        setup.create(EC_KEY, KeyKind.EC_P256)
        setup.create(MAC_KEY, KeyKind.HMAC_SHA256)
    finally:
        setup.close()


def run(names: list[str], seconds: float) -> list[Result]:
    with (
        tempfile.TemporaryDirectory(prefix="bench-transports-") as tmp,
        swtpm_round_trips_counted(),
    ):
        workdir = Path(tmp)
        tpm = Swtpm(workdir / "swtpm")
        tpm.start()
        try:
            make_keys(tpm, workdir / "keys")
            results = []
            for name in [BASELINE, *[n for n in names if n != BASELINE]]:
                try:
                    results.append(bench_subject(name, tpm, workdir, workdir / "keys", seconds))
                except Exception as err:  # a transport that cannot run is reported, others run
                    if name == BASELINE:
                        raise
                    print(f"{name}: not measured: {type(err).__name__}: {err}", file=sys.stderr)
        finally:
            tpm.stop()
    against_baseline(results)
    return results


def _us(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def report(results: list[Result]) -> None:
    print(f"{'transport':13} " + " ".join(f"{op + '/s':>17} {'ratio':>5}" for op in OPERATIONS))
    for r in results:
        cells = " ".join(f"{r.rates[op]:17.0f} {r.ratios[op]:5.2f}" for op in OPERATIONS)
        print(f"{r.name:13} {cells}")
    print(f"\nper GetRandom through ESAPI, µs; overhead = per command - {BASELINE}'s per command:")
    columns = {
        "per command": "us_per_command",
        "raw": "raw_us_per_command",
        "raw pauses": "raw_polling_pauses_us",
        "overhead": "over_baseline_us",
        "simulator": "simulator_share_us",
        "driver": "driver_share_us",
        "sim bus": "simulator_bus_us",
        "sim→swtpm": "simulator_to_swtpm_us",
    }
    print(f"{'transport':13} " + " ".join(f"{title:>11}" for title in columns))
    for r in results:
        cells = " ".join(f"{_us(r.per_command.get(key)):>11}" for key in columns.values())
        print(f"{r.name:13} {cells}")
    print("\non the bus per operation (times computed from the bytes counted, not measured):")
    for r in results:
        for op, figures in r.bus_per_op.items():
            text = ", ".join(
                f"{key.removeprefix('computed_').replace('_', ' ')} {value:.0f}"
                for key, value in figures.items()
            )
            print(f"{r.name:13} {op:16} {text}")
    print(f"\nnote: {GIL_NOTE}")


def machine() -> dict[str, Any]:
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="measuring time per figure")
    parser.add_argument(
        "--only",
        default=",".join(TRANSPORTS),
        help=f"comma-separated transports among {', '.join(TRANSPORTS)} (the baseline always runs)",
    )
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    args = parser.parse_args(argv)
    names = args.only.split(",")
    unknown = sorted(set(names) - set(TRANSPORTS))
    if unknown:
        parser.error(
            f"unknown transport {', '.join(unknown)}: choose among {', '.join(TRANSPORTS)}"
        )
    results = run(names, args.seconds)
    report(results)
    if args.json:
        document = {
            "machine": machine(),
            "seconds": args.seconds,
            "baseline": BASELINE,
            "note": GIL_NOTE,
            "transports": [asdict(r) for r in results],
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    return 0 if results else 1


if __name__ == "__main__":
    sys.exit(main())
