"""bench/transports.py runs end to end on a short measuring time and writes the figures it prints.

A smoke test of the bench (its private swtpm, the SPI simulator, serial frames straight to swtpm),
not of the figures: each rate must be positive, the baseline's ratios 1, the bus time computed from
the bytes counted.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[3] / "bench" / "transports.py"
OPERATIONS = {"raw round trip", "getrandom", "ecdsa-p256 sign", "hmac-sha256"}


def run_bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BENCH), *args], capture_output=True, text=True, timeout=60
    )


@pytest.mark.swtpm
def test_the_bench_measures_each_transport_beside_the_baseline(tmp_path: Path) -> None:
    out = tmp_path / "transports.json"
    done = run_bench("--seconds", "0.05", "--only", "mssim+socket,tis-spi", "--json", str(out))
    assert done.returncode == 0, done.stderr
    document = json.loads(out.read_text())
    assert document["baseline"] == "swtpm" and document["seconds"] == 0.05
    assert document["machine"]["cpus"] >= 1
    assert "one GIL" in document["note"]
    results = {r["name"]: r for r in document["transports"]}
    assert list(results) == ["swtpm", "mssim+socket", "tis-spi"]
    for result in results.values():
        assert set(result["rates"]) == OPERATIONS
        assert all(rate > 0 for rate in result["rates"].values()), result
        assert result["per_command"]["us_per_command"] > 0
    assert set(results["swtpm"]["ratios"].values()) == {1.0}
    assert results["swtpm"]["per_command"]["over_baseline_us"] == 0.0
    assert results["swtpm"]["bus_per_op"] == {}

    spi = results["tis-spi"]
    assert spi["url"].startswith("tis-spi://")
    ratio = spi["rates"]["getrandom"] / results["swtpm"]["rates"]["getrandom"]
    assert spi["ratios"]["getrandom"] == pytest.approx(ratio)
    figures = spi["per_command"]
    assert figures["simulator_bus_us"] > 0 and figures["simulator_to_swtpm_us"] > 0
    assert figures["raw_polling_pauses_us"] >= 0
    assert figures["over_baseline_us"] == pytest.approx(
        figures["simulator_share_us"] + figures["driver_share_us"]
    )
    for operation in ("getrandom", "ecdsa-p256 sign"):
        bus = spi["bus_per_op"][operation]
        # a TIS command moves at least a header and the command's 10-byte TPM header
        assert bus["transactions"] >= 4 and bus["bytes"] > 10
        assert bus["computed_us_10000_khz"] == pytest.approx(bus["bytes"] * 8 / 10e6 * 1e6)
    assert spi["bus_per_op"]["ecdsa-p256 sign"]["bytes"] > spi["bus_per_op"]["getrandom"]["bytes"]

    assert "getrandom/s" in done.stdout and "tis-spi" in done.stdout
    assert "computed" in done.stdout


def test_an_unknown_transport_is_refused_before_anything_starts() -> None:
    done = run_bench("--only", "tis-i3c")
    assert done.returncode == 2
    assert "unknown transport tis-i3c" in done.stderr
