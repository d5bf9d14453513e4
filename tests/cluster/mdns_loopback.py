"""Scenario run by ``test_discovery.py`` inside a fresh ``unshare -rn`` namespace.

Two real nodes on 127.0.0.1 (different ports) with no static peers and mDNS on
loopback (multicast turned on there) must find each other and replicate one
write each way. Prints one JSON object; any failure raises (exit status 1).
It refuses to run where any interface but ``lo`` exists (NETWORK-TESTING.md).
"""

from __future__ import annotations

import json
import socket
import sys
import tempfile
import time
from pathlib import Path

from tests.cluster.lab import (
    CENTER,
    EXAMNODE,
    NodeProc,
    base_env,
    run,
    stop_and_verify,
    wait_converged,
)

LOOPBACK = "127.0.0.1"
PORTS = {1: (18700, 18701), 2: (18710, 18711)}


def _options(i: int) -> list[str]:
    api, repl = PORTS[i]
    return ["--listen", f"{LOOPBACK}:{api}", "--replication-port", str(repl),
            "--mdns-interface", LOOPBACK]


def main(root: Path) -> dict[str, object]:
    """Run the scenario in ``root`` and return what happened."""
    env = base_env()
    no_peers = {"NODE_DISCOVERY_PEERS": ""}  # the join's static peer is dropped
    run([*EXAMNODE, "init", "--data", str(root / "n1"), "--center", CENTER, *_options(1)],
        env=env)
    n1 = NodeProc("n1", root / "n1", env=no_peers)
    n2 = NodeProc("n2", root / "n2", env=no_peers)
    try:
        n1.start()
        token = run([*EXAMNODE, "invite", "--data", str(root / "n1")],
                    env=env).stdout.split()[-1]
        run([*EXAMNODE, "join", "--data", str(root / "n2"), "--token", token, *_options(2)],
            env=env)
        t0 = time.monotonic()
        n2.start()
        n1.put("from1", "a")
        n2.put("from2", "b")
        records = wait_converged([n1, n2], {"from1": "a", "from2": "b"}, timeout=40)
        took = round(time.monotonic() - t0, 2)
        peers = {n.name: n.status()["peers"] for n in (n1, n2)}
        stop_and_verify(n1, n2)
    finally:
        n1.close()
        n2.close()
    return {"records": sorted(records), "peers": peers, "ids": [n1.node_id, n2.node_id],
            "seconds": took}


if __name__ == "__main__":
    names = [name for _, name in socket.if_nameindex()]
    if names != ["lo"]:
        sys.exit(f"refusing to send mDNS: interfaces {names}; run only under unshare -rn")
    with tempfile.TemporaryDirectory(prefix="examnode-mdns-") as tmp:
        print(json.dumps(main(Path(tmp))))
