"""A machine that joins late gets everything from whichever peer is up (DESIGN.md s3, s7).

Node 3 redeems its token at node 1 while node 1 runs; node 1 then goes down,
and node 3, whose only peer is node 2, receives the union of what nodes 1 and
2 wrote (node 1's deltas relayed by node 2, with node 1's certificate). When
node 1 comes back, it learns node 3's writes through node 2 as well.
"""

from __future__ import annotations

from tests.cluster.conftest import MakeLab
from tests.cluster.lab import CENTER, acked, stop_and_verify, wait_converged


def test_late_joiner_receives_the_union_from_a_peer_other_than_its_inviter(
        make_lab: MakeLab) -> None:
    lab = make_lab(3)
    n1 = lab.init(1, env=lab.peers_env(2))
    n1.start()
    n2 = lab.join(2, env=lab.peers_env(1))
    n2.start()
    n1.burst("one", 1000)
    n2.burst("two", 1000)
    n1.wait_burst("one")
    n2.wait_burst("two")
    wait_converged([n1, n2], acked(n1, n2))

    n3 = lab.join(3, env=lab.peers_env(2))  # the token is redeemed at node 1's API
    n1.stop()
    n3.start()
    records = wait_converged([n2, n3], acked(n1, n2), timeout=60)
    assert len(records) == 2000
    assert f"{n1.node_id}/{CENTER}" in n3.vv()

    n3.put("late3", "z")
    n1.start()
    records = wait_converged([n1, n2, n3], acked(n1, n2, n3), timeout=60)
    assert records["lab/late3"] == {"v": "z", "by": n3.node_id}
    stop_and_verify(n1, n2, n3)
