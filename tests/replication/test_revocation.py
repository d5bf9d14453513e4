"""Revoking a node: its session drops, its later deltas are refused, its earlier ones stay."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from node.runtime import open_context
from node.store.hlc import hlc_millis
from tests.replication.conftest import (
    Cluster,
    Node,
    Proxy,
    RawPeer,
    chains,
    cli,
    converged,
    records,
    stays,
    wait_until,
)


async def test_a_revoked_node_is_cut_off_and_its_later_writes_refused(
        cluster: Cluster, raw_peer: Callable[[Path], RawPeer]) -> None:
    a = await (await cluster.init("a")).start()
    b = await (await cluster.join(a, "b")).start()
    c = await (await cluster.join(a, "c")).start()  # the stolen laptop
    courier = await cluster.join(a, "courier")  # a certified node driven by hand
    await wait_until(lambda: a.peers() == {b.node_id, c.node_id}, what="star around a")
    for i in range(3):
        await c.store.put(f"answers/c{i}", {"v": i}, scope="DEMO")
    await converged(a, b, c, collection="answers")
    before = c.store.version_vector()[(c.public_key, "DEMO")]

    # b's admin revokes c with the CLI while b is down; b then comes back and tells a.
    await b.stop()
    result = await cli("revoke", "--data", b.data, c.node_id, "--reason", "stolen")
    assert result.code == 0, result.err
    await b.start()
    await wait_until(lambda: a.store.get(f"revocations/{c.node_id}") is not None,
                     what="the revocation reached a")
    await wait_until(lambda: c.node_id not in a.peers(), timeout=5,
                     what="a dropped the revoked node's session")

    # What c writes now never reaches anyone, and c cannot come back.
    await c.store.put("answers/c-late", {"v": "late"}, scope="DEMO")
    await c.store.put("answers/c0", {"v": "rewritten"})
    await stays(lambda: c.node_id not in a.peers() and a.store.get("answers/c-late") is None
                and b.store.get("answers/c-late") is None, 2.0,
                "c stays cut off and its late writes stay out")
    assert a.rep.status()["dialing"] == {}
    # Relayed by another certified node, c's later deltas are refused as revoked.
    late = c.store.chain_items(c.public_key, "DEMO", before)
    assert len(late) == 2
    peer = raw_peer(courier.data)
    await peer.connect(a)
    ack = await peer.chain(c.public_key, "DEMO", late)
    assert (ack["r"], ack["head"]) == ("revoked", before)

    for node in (a, b):
        assert records(node.store, "answers") == {f"answers/c{i}": {"v": i} for i in range(3)}
        assert chains(node.store)[(c.public_key, "DEMO")] == before
    await b.verify()  # a's verify: see test_deltas_made_before_a_revocation_stay_valid
    await converged(a, b, collection="answers")

    # The CLI refuses what makes no sense.
    await b.stop()
    again = await cli("revoke", "--data", b.data, c.node_id)
    assert again.code == 1 and "already revoked" in again.err
    unknown = await cli("revoke", "--data", b.data, "AAAAAAA-BBBBBBB-CCCCCCC-DDDDDDD")
    assert unknown.code == 1 and "unknown node" in unknown.err
    itself = await cli("revoke", "--data", b.data, b.node_id)
    assert itself.code == 1 and "itself" in itself.err


async def test_revocation_written_live_drops_a_direct_session(cluster: Cluster) -> None:
    a = await (await cluster.init("a")).start()
    b = await (await cluster.join(a, "b")).start()
    await wait_until(lambda: b.node_id in a.peers(), what="b connected")
    await b.store.put("answers/b0", {"v": 0}, scope="DEMO")
    await converged(a, b, collection="answers")
    # What cmd_revoke writes, written by the running node itself.
    await a.store.put(f"revocations/{b.node_id}", {
        "node_id": b.node_id, "public_key": b.public_key.hex(),
        "revoked_at_ms": hlc_millis(a.store.clock.now()), "reason": "retired", "by": a.node_id},
        scope="DEMO")
    await wait_until(lambda: b.node_id not in a.peers() and a.node_id not in b.peers(),
                     timeout=5, what="the session dropped")
    await b.store.put("answers/b1", {"v": 1}, scope="DEMO")
    await stays(lambda: b.node_id not in a.peers() and a.store.get("answers/b1") is None, 1.5)
    assert a.store.get("answers/b0") is not None
    await a.verify()


async def test_deltas_made_before_a_revocation_stay_valid(
        cluster: Cluster, raw_peer: Callable[[Path], RawPeer]) -> None:
    a = await (await cluster.init("a")).start()
    b = await (await cluster.join(a, "b")).start()
    c = await (await cluster.join(a, "c")).start()
    courier = await cluster.join(a, "courier")
    for i in range(3):
        await c.store.put(f"answers/c{i}", {"v": i}, scope="DEMO")
    await converged(a, b, c, collection="answers")
    made = c.store.chain_items(c.public_key, "DEMO")
    await c.stop()
    # a revokes c; b receives the revocation record from a.
    await a.store.put(f"revocations/{c.node_id}", {
        "node_id": c.node_id, "public_key": c.public_key.hex(),
        "revoked_at_ms": hlc_millis(a.store.clock.now()), "reason": "stolen", "by": a.node_id},
        scope="DEMO")
    await wait_until(lambda: b.store.get(f"revocations/{c.node_id}") is not None,
                     what="the revocation reached b")
    # d knows of the revocation but not yet of c's earlier answers (like HQ syncing late).
    d = await (await cluster.join(a, "d", peers=[])).start()
    peer = raw_peer(courier.data)
    await peer.connect(d)
    await peer.send({"t": "certs", "chains": [list(open_context(a.data).trust.chain_der),
                                              list(open_context(c.data).trust.chain_der)]})
    ack = await peer.chain(a.public_key, "DEMO", a.store.chain_items(a.public_key, "DEMO"))
    assert ack["r"] == "" and d.store.get(f"revocations/{c.node_id}") is not None
    ack = await peer.chain(c.public_key, "DEMO", made)
    assert (ack["r"], ack["head"]) == ("", len(made)), "c's earlier answers were refused"
    assert len(records(d.store, "answers")) == 3
    await b.verify()
    await d.verify()


async def test_late_deltas_stored_before_the_revocation_arrived_do_not_split_the_hall(
        cluster: Cluster, proxy: Callable[[Node], Awaitable[Proxy]]) -> None:
    quick = {"replication": {"heartbeat": 0.2, "dead_after": 1.0, "backoff_max": 0.5}}
    a = await (await cluster.init("a", config=quick)).start()
    link = await proxy(a)
    b = await (await cluster.join(a, "b", peers=[link.addr], config=quick)).start()
    c = await (await cluster.join(a, "c", peers=[b.repl_addr], config=quick)).start()
    await c.store.put("answers/c0", {"v": 0}, scope="DEMO")
    await converged(a, b, c, collection="answers")

    # a and b are cut apart; a revokes c; c, still talking to b, writes on.
    link.partition()
    await wait_until(lambda: not a.peers(), timeout=5, what="a alone")
    await a.store.put(f"revocations/{c.node_id}", {
        "node_id": c.node_id, "public_key": c.public_key.hex(),
        "revoked_at_ms": hlc_millis(a.store.clock.now()), "reason": "stolen", "by": a.node_id},
        scope="DEMO")
    await c.store.put("answers/c1", {"v": "late"}, scope="DEMO")
    await wait_until(lambda: b.store.get("answers/c1") is not None, what="c's late write at b")

    link.heal()
    await wait_until(lambda: b.store.get(f"revocations/{c.node_id}") is not None,
                     what="the revocation reached b")
    await wait_until(lambda: c.node_id not in b.peers(), timeout=5, what="b dropped c")
    # Once quiet, a and b must agree, and hold only deltas that verify; b keeps the late
    # delta it had accepted in quarantine (reason "revoked") for a person to see.
    await converged(a, b, timeout=5)
    await a.verify()
    await b.verify(quarantined=1)
    assert [q["reason"] for q in b.store.quarantined()] == ["revoked"]
    assert b.store.get("answers/c1") is None
    assert b.store.get("answers/c0") is not None
