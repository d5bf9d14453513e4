"""HQ and provisioned centres: no centre node holds another centre's scope (DESIGN.md s5, s9)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import msgpack

from tests.replication.conftest import (
    Cluster,
    Node,
    RawPeer,
    chains,
    converged,
    offline_store,
    records,
    stays,
    wait_until,
)


async def _deployment(cluster: Cluster) -> tuple[Node, Node, Node, Node]:
    """Return (hq, a1, b1, a2): HQ peers with the first nodes of A and B; a2 joined a1."""
    hq = await cluster.init("hq", hq=True)
    a1 = await cluster.init("a1", from_file=await cluster.provision(hq, "A"))
    # b1 also shares a LAN with a1 and dials it: the link must carry only global.
    b1 = await cluster.init("b1", from_file=await cluster.provision(hq, "B"),
                            config={"discovery": {"peers": [a1.repl_addr]}})
    await a1.start()
    await b1.start()
    await wait_until(lambda: b1.node_id in a1.peers(), what="b1 connected to a1")
    cluster.configure(hq, {"discovery": {"peers": [a1.repl_addr, b1.repl_addr]}})
    await hq.start()
    await wait_until(lambda: hq.peers() == {a1.node_id, b1.node_id}, what="hq connected")
    a2 = await (await cluster.join(a1, "a2")).start()
    await wait_until(lambda: a2.node_id in a1.peers(), what="a2 connected to a1")
    return hq, a1, b1, a2


def _scopes(node: Node) -> set[str]:
    return {scope for _origin, scope in chains(node.store)}


def _all_scopes_of_records(node: Node) -> set[str]:
    """Return the scope of every record the node holds, of every collection."""
    with node.store.env.begin() as txn, txn.cursor(db=node.store._dbs["views"]) as cur:
        return {msgpack.unpackb(raw, raw=False)["scope"] for _k, raw in cur}


async def test_each_centre_gets_its_scope_and_global_and_hq_gets_all(cluster: Cluster) -> None:
    hq, a1, b1, a2 = await _deployment(cluster)
    await a2.store.put("candidates/A-1", {"name": "in A"}, scope="A")
    await b1.store.put("candidates/B-1", {"name": "in B"}, scope="B")
    await hq.store.put("exams/physics", {"title": "Physics"}, scope="global")

    await wait_until(lambda: {"candidates/A-1", "candidates/B-1"} <= set(
        records(hq.store, "candidates")), what="hq has both centres")
    for node in (a1, a2, b1):
        await wait_until(lambda n=node: "exams/physics" in records(n.store, "exams"),
                         what=f"{node} has the global exam")
    await converged(a1, a2, collection="candidates")
    # Let anything that would leak have the time to leak.
    await stays(lambda: _scopes(a1) == {"A", "global"} and _scopes(b1) == {"B", "global"}, 1.0,
                "centre nodes hold only their scope and global")

    assert _scopes(hq) == {"A", "B", "global"}
    assert _scopes(a2) == {"A", "global"}
    for node, own, other in ((a1, "A", "B"), (a2, "A", "B"), (b1, "B", "A")):
        assert set(records(node.store, "candidates")) == {f"candidates/{own}-1"}
        assert _all_scopes_of_records(node) == {own, "global"}
        assert not any(r["center"] == other for r in records(node.store, "nodes").values())
        assert node.store.stats()["pending_entries"] == 0
        await node.verify()
    # HQ's roster knows every node; each centre's roster knows its own and HQ.
    assert len(records(hq.store, "nodes")) == 4
    assert set(records(b1.store, "nodes")) == {f"nodes/{b1.node_id}", f"nodes/{hq.node_id}"}
    await hq.verify()


async def test_a_centre_node_cannot_write_another_scope_or_global(
        cluster: Cluster, raw_peer: Callable[[Path], RawPeer]) -> None:
    hq, a1, b1, _a2 = await _deployment(cluster)
    # A node of centre A, driven by hand, offers HQ deltas it signed for B and for global.
    rogue_dir = (await cluster.join(a1, "rogue")).data
    with offline_store(rogue_dir) as store:
        me = store.identity.public_key
        await store.put("candidates/B-9", {"name": "planted"}, scope="B")
        await store.put("exams/fake", {"title": "Fake"}, scope="global")
        await store.put("candidates/A-9", {"name": "fine"}, scope="A")
        items = {s: store.chain_items(me, s) for s in ("A", "B", "global")}
    peer = raw_peer(rogue_dir)
    await peer.connect(hq)
    assert (await peer.chain(me, "B", items["B"]))["r"] == "scope_not_allowed"
    assert (await peer.chain(me, "global", items["global"]))["r"] == "scope_not_allowed"
    ack = await peer.chain(me, "A", items["A"])
    assert ack["r"] == "" and ack["head"] == 1
    await wait_until(lambda: a1.store.get("candidates/A-9") is not None,
                     what="the rogue's own-scope write relayed by HQ to A")
    assert hq.store.get("candidates/B-9") is None and hq.store.get("exams/fake") is None
    assert (me, "B") not in chains(hq.store) and (me, "global") not in chains(hq.store)
    # The same offer to a centre node of B is refused before the store sees it.
    peer_b = raw_peer(rogue_dir)
    await peer_b.connect(b1)
    assert (await peer_b.chain(me, "B", items["B"]))["r"] == "scope_not_allowed"
    assert (await peer_b.chain(me, "A", items["A"]))["r"] == "scope"
    assert b1.store.get("candidates/A-9") is None and b1.store.get("candidates/B-9") is None
    await stays(lambda: _scopes(b1) == {"B", "global"}, 0.5)
    for node in (hq, a1, b1):
        await node.verify()
