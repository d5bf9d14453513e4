"""Partition and heal three real nodes in network namespaces (DESIGN.md s9, 1 and 2).

Multicast is blocked at the bridge, so the nodes run mDNS but only their static
peers (a full mesh) connect them. Node 3's link goes down while every side
writes; after the heal all three hold the same records and version vectors and
no acknowledged write is missing anywhere; ``examnode verify`` then passes.
"""

from __future__ import annotations

from tests.cluster.conftest import MakeLab
from tests.cluster.lab import acked, stop_and_verify, wait_converged, wait_mesh, wait_until


def test_partition_and_heal_converges_without_losing_acknowledged_writes(
        make_lab: MakeLab) -> None:
    lab = make_lab(3, multicast=False)
    n1 = lab.init(1, mdns=True, env=lab.peers_env(2, 3))
    n1.start()
    n2 = lab.join(2, mdns=True, env=lab.peers_env(1, 3))
    n3 = lab.join(3, mdns=True, env=lab.peers_env(1, 2))
    n2.start()
    n3.start()
    nodes = [n1, n2, n3]
    wait_mesh(nodes)  # static peers alone: multicast does not cross the bridge

    n1.burst("before1", 500)
    n3.burst("before3", 500)
    n1.wait_burst("before1")
    n3.wait_burst("before3")
    wait_converged(nodes, acked(*nodes))

    lab.link(3, up=False)
    n1.burst("cut1", 1000)
    n2.burst("cut2", 200)
    n3.burst("cut3", 1000)
    for node, prefix in ((n1, "cut1"), (n2, "cut2"), (n3, "cut3")):
        node.wait_burst(prefix)
    # The sessions across the cut die (dead_after), so the heal must redial and resync.
    wait_until(lambda: not n3.status()["peers"]
               and n3.node_id not in n1.status()["peers"] + n2.status()["peers"],
               "sessions across the partition dropped", 20)
    assert "lab/cut1-0" not in n3.dump(), "the partition did not cut node 3 off"
    assert "lab/cut3-0" not in n1.dump(), "the partition did not cut node 3 off"

    lab.link(3, up=True)
    n2.burst("heal2", 300)  # writes while the sessions come back
    n2.wait_burst("heal2")
    records = wait_converged(nodes, acked(*nodes), timeout=90)
    assert len(records) == 3500
    stop_and_verify(*nodes)
