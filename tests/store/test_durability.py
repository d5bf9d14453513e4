"""No acknowledged write is lost (DESIGN.md section 9, invariant 2): SIGKILL mid-write."""

from __future__ import annotations

import asyncio
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from node.identity import Identity
from node.store.verify import verify_store
from tests.store.conftest import OpenStore
from tests.store.helpers import SCOPE

ROOT = Path(__file__).resolve().parents[2]
ACKWRITER = Path(__file__).with_name("ackwriter.py")
WANTED_ACKS = 300


def _read_acks(proc: subprocess.Popen[bytes], wanted: int, timeout: float) -> dict[str, int]:
    """Read ACK lines until ``wanted`` arrived; return the highest value acknowledged per key."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    acked: dict[str, int] = {}
    count, buf = 0, b""
    deadline = time.monotonic() + timeout
    while count < wanted:
        left = deadline - time.monotonic()
        assert left > 0, f"only {count} acks after {timeout}s"
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        chunk = os.read(fd, 65536)
        assert chunk, f"writer exited early (rc={proc.poll()}) after {count} acks"
        buf += chunk
        *lines, buf = buf.split(b"\n")
        for line in lines:
            tag, key, value = line.decode().split()
            assert tag == "ACK"
            acked[key] = max(acked.get(key, -1), int(value))
            count += 1
    return acked


def test_acknowledged_writes_survive_sigkill(tmp_path: Path, open_store: OpenStore) -> None:
    data = tmp_path / "node"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, str(ACKWRITER), str(data), "8", "5"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        acked = _read_acks(proc, WANTED_ACKS, timeout=30)
        os.kill(proc.pid, signal.SIGKILL)  # mid-write: the workers never stop on their own
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL

    identity = Identity.load(data)
    store = open_store("node", identity=identity)
    assert len(acked) == 40  # 8 workers x 5 keys
    lost = {}
    for key, value in acked.items():
        view = store.get(key)
        if view is None or view.data["v"] < value:
            lost[key] = (value, None if view is None else view.data["v"])
    assert not lost, f"acknowledged writes lost (key: (acked, stored)): {lost}"

    report = verify_store(store)
    assert report.ok, report.problems
    assert report.pending == report.quarantined == 0
    assert report.deltas == store.stats()["log_entries"] >= WANTED_ACKS

    # The node carries on where it stopped: its chain continues without a fork.
    head = store.version_vector()[(identity.public_key, SCOPE)]
    next_value = max(acked.values()) + 1000
    result = asyncio.run(store.put("acks/w0-k0", {"v": next_value}))
    assert result.seq == head + 1
    assert verify_store(store).ok
