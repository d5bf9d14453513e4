"""mDNS discovery between real nodes that have no static peers (DESIGN.md s7).

Loopback: two nodes in one fresh ``unshare -rn`` namespace with multicast on
``lo``. Lab: two namespaces on a bridge, mDNS on their 10.77 addresses. In
both, the nodes find each other by mDNS alone and replicate both ways. (With
multicast blocked, static peers carry replication: ``test_partition.py``.)
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

from tests.cluster.conftest import MakeLab, require
from tests.cluster.lab import ROOT, base_env, stop_and_verify, wait_converged

# "$0" "$@" pass the interpreter and its arguments through without shell quoting.
NETNS = ["unshare", "-rn", "sh", "-c",
         'ip link set lo up && ip link set lo multicast on && exec "$0" "$@"']


def _missing_userns() -> str | None:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "`unshare` (util-linux) and `ip` (iproute2) are needed"
    probe = subprocess.run([*NETNS, "true"], capture_output=True, text=True, timeout=10,
                           check=False)
    if probe.returncode != 0:
        return f"`unshare -rn` with multicast on lo failed: {probe.stderr.strip()}"
    return None


def test_two_nodes_on_loopback_find_each_other_by_mdns_and_replicate() -> None:
    require(_missing_userns())
    proc = subprocess.run([*NETNS, sys.executable, "-m", "tests.cluster.mdns_loopback"],
                          capture_output=True, text=True, cwd=ROOT, env=base_env(),
                          timeout=120, check=False)
    assert proc.returncode == 0, f"scenario failed:\n{proc.stdout}\n{proc.stderr[-4000:]}"
    result = json.loads(proc.stdout.splitlines()[-1])
    one, two = result["ids"]
    assert result["peers"] == {"n1": [two], "n2": [one]}
    assert result["records"] == ["lab/from1", "lab/from2"]


def test_two_namespace_nodes_find_each_other_by_mdns_and_replicate(make_lab: MakeLab) -> None:
    lab = make_lab(2)
    n1 = lab.init(1, mdns=True)
    n1.start()
    n2 = lab.join(2, mdns=True, env=lab.peers_env())  # no static peer at all
    n2.start()
    n1.put("from1", "a")
    n2.put("from2", "b")
    wait_converged([n1, n2], {"from1": "a", "from2": "b"}, timeout=40)
    assert n1.status()["peers"] == [n2.node_id]
    assert n2.status()["peers"] == [n1.node_id]
    stop_and_verify(n1, n2)


