"""Kill a process at random points of a state write: the document is always the old or the new one.

A child process rewrites one document in a loop and reports each completed `put` on stdout. The
test SIGKILLs it after a random delay, then reads the file: it must parse and hold either the
last acknowledged document or the one after it, with a payload that matches its sequence number.
"""

from __future__ import annotations

import hashlib
import os
import random
import select
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from firmware.store.state import StateStore

ITERATIONS = 60
TIME_BUDGET_S = 40.0
REPO = Path(__file__).resolve().parents[2]

WRITER = textwrap.dedent(
    """
    import hashlib, sys
    from firmware.store.state import StateStore

    store = StateStore(sys.argv[1])
    start = int(sys.argv[2])
    seq = start
    while True:
        seq += 1
        digest = hashlib.sha256(str(seq).encode()).hexdigest()
        store.put("doc", {"seq": seq, "payload": [digest] * 2000})
        sys.stdout.write(f"{seq}\\n")
        sys.stdout.flush()
    """
)


def expected_payload(seq: int) -> list[str]:
    return [hashlib.sha256(str(seq).encode()).hexdigest()] * 2000


def read_acknowledged(child: subprocess.Popen[bytes], deadline: float) -> int | None:
    """Block until the child acknowledged at least one write; return the latest number seen."""
    assert child.stdout is not None
    ready, _, _ = select.select([child.stdout], [], [], max(0.0, deadline - time.monotonic()))
    if not ready:
        return None
    return int(child.stdout.readline())


def test_killed_writer_leaves_old_or_new_document(tmp_path: Path) -> None:
    root = tmp_path / "state"
    store = StateStore(root)
    store.put("doc", {"seq": 0, "payload": expected_payload(0)})
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    rng = random.Random(0x5EED)
    started = time.monotonic()
    seen_new = mid_write = 0
    iterations = 0
    while iterations < ITERATIONS and time.monotonic() - started < TIME_BUDGET_S:
        iterations += 1
        before = store.get("doc")
        assert before is not None
        child = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(root), str(before["seq"])],
            stdout=subprocess.PIPE,
            env=env,
        )
        try:
            first = read_acknowledged(child, time.monotonic() + 10)
            assert first == before["seq"] + 1, "the writer child did not start writing"
            # the subject of the test: let the writer run for a random while, then cut its power
            time.sleep(rng.uniform(0, 0.02))
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=10)
            assert child.stdout is not None
            acknowledged = [int(line) for line in child.stdout.read().split()]
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
            if child.stdout is not None:
                child.stdout.close()
        last_ack = acknowledged[-1] if acknowledged else first
        doc = store.get("doc")
        assert doc is not None, f"iteration {iterations}: the document vanished"
        assert doc["seq"] in (last_ack, last_ack + 1), (
            f"iteration {iterations}: found seq {doc['seq']}, last acknowledged {last_ack}"
        )
        assert doc["payload"] == expected_payload(doc["seq"]), "torn document"
        if doc["seq"] != last_ack:
            seen_new += 1
        if len(list(root.iterdir())) > 1:
            mid_write += 1
        store.ensure()
        assert [p.name for p in root.iterdir()] == ["doc.json"], "temp file left after ensure()"
    assert iterations >= 20, f"only {iterations} kill iterations fitted in {TIME_BUDGET_S} s"
    assert mid_write > 0, (
        f"no kill of {iterations} landed inside a write ({seen_new} after the rename, before the "
        "acknowledgement); the test did not exercise the window"
    )
