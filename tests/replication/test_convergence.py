"""Nodes of one centre converge: both ways, relayed, concurrently, late (DESIGN.md s7, s9)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

import pytest

from node.errors import StoreError
from tests.replication.conftest import (
    Cluster,
    Node,
    Proxy,
    chains,
    converged,
    records,
    stays,
    wait_until,
)


async def _pair(cluster: Cluster) -> tuple[Node, Node]:
    a = await (await cluster.init("a")).start()
    b = await (await cluster.join(a, "b")).start()
    await wait_until(lambda: b.node_id in a.peers() and a.node_id in b.peers(),
                     what="a and b connected")
    return a, b


async def test_writes_on_either_node_reach_the_other(cluster: Cluster) -> None:
    a, b = await _pair(cluster)
    for i in range(5):
        await a.store.put(f"candidates/a{i}", {"name": f"from a {i}", "n": i}, scope="DEMO")
        await b.store.put(f"candidates/b{i}", {"name": f"from b {i}", "n": i}, scope="DEMO")
    await b.store.put("candidates/a0", {"seat": "B-12"})  # b edits a's record
    await converged(a, b, collection="candidates")

    view = records(a.store, "candidates")
    assert len(view) == 10
    assert view["candidates/a0"] == {"name": "from a 0", "n": 0, "seat": "B-12"}
    assert view["candidates/b4"] == {"name": "from b 4", "n": 4}
    # Each node holds both chains of the centre, complete, and both rosters.
    vv = chains(a.store)
    assert vv == chains(b.store)
    assert {(o, s) for o, s in vv} == {(a.public_key, "DEMO"), (b.public_key, "DEMO")}
    assert set(records(b.store, "nodes")) == {f"nodes/{a.node_id}", f"nodes/{b.node_id}"}
    await a.verify()
    await b.verify()


async def test_gossip_relays_along_a_line(cluster: Cluster) -> None:
    a = await (await cluster.init("a")).start()
    b = await (await cluster.join(a, "b")).start()
    # c is certified through a's token but only ever talks to b: a - b - c.
    c = await (await cluster.join(a, "c", peers=[b.repl_addr])).start()
    await wait_until(lambda: c.node_id in b.peers() and a.node_id in b.peers(),
                     what="b connected to a and c")
    await a.store.put("exams/e1", {"title": "Physics"}, scope="DEMO")
    await c.store.put("exams/e2", {"title": "Chemistry"}, scope="DEMO")
    await converged(a, b, c, collection="exams")
    assert records(c.store, "exams")["exams/e1"] == {"title": "Physics"}
    assert records(a.store, "exams")["exams/e2"] == {"title": "Chemistry"}
    # The data went through b: a and c never met.
    assert c.node_id not in a.peers() and a.node_id not in c.peers()
    for node in (a, b, c):
        await node.verify()


async def test_concurrent_writes_to_one_record_merge_the_same_everywhere(
        cluster: Cluster, proxy: Callable[[Node], Awaitable[Proxy]]) -> None:
    a = await (await cluster.init("a")).start()
    link = await proxy(a)
    b = await (await cluster.join(a, "b", peers=[link.addr])).start()
    await wait_until(lambda: a.node_id in b.peers(), what="b connected through the proxy")
    await a.store.put("candidates/42", {"name": "Asha", "seat": "1"}, scope="DEMO")
    await converged(a, b, collection="candidates")

    # Cut the link silently, write the same record on both sides, heal.
    link.partition()
    await a.store.put("candidates/42", {"seat": "A-7", "photo": "checked"})
    await b.store.put("candidates/42", {"seat": "B-3", "phone": "555"})
    # Both create the same natural key while apart: it must merge, not duplicate.
    await a.store.put("candidates/77", {"name": "Ravi", "by": "a"}, scope="DEMO")
    await b.store.put("candidates/77", {"name": "Ravi", "by": "b"}, scope="DEMO")
    assert records(a.store, "candidates") != records(b.store, "candidates")
    link.heal()
    await converged(a, b, collection="candidates", timeout=20)

    merged = records(a.store, "candidates")
    assert merged == records(b.store, "candidates")
    c42 = merged["candidates/42"]
    assert c42["name"] == "Asha" and c42["photo"] == "checked" and c42["phone"] == "555"
    assert c42["seat"] in ("A-7", "B-3")
    assert merged["candidates/77"]["by"] in ("a", "b")
    assert set(merged) == {"candidates/42", "candidates/77"}

    # Truly simultaneous writes over a live link converge too.
    await asyncio.gather(*(n.store.put("candidates/42", {"seat": f"{n.name}-{i}"})
                           for i in range(10) for n in (a, b)))
    await converged(a, b, collection="candidates")
    await a.verify()
    await b.verify()


async def test_late_joiner_gets_the_union_from_a_surviving_node(cluster: Cluster) -> None:
    a, b = await _pair(cluster)
    for i in range(20):
        await a.store.put(f"answers/a{i}", {"v": i}, scope="DEMO")
        await b.store.put(f"answers/b{i}", {"v": i}, scope="DEMO")
    await converged(a, b, collection="answers")

    # c is admitted by a (which holds the centre's signing key); then a goes away for good
    # and c, which only knows b, starts.
    c = await cluster.join(a, "c", peers=[b.repl_addr])
    await a.stop()
    await c.start()
    await wait_until(lambda: c.node_id in b.peers(), what="c connected to b")
    await converged(b, c, collection="answers")
    assert len(records(c.store, "answers")) == 40
    assert (a.public_key, "DEMO") in chains(c.store)
    await c.store.put("answers/c0", {"v": 0}, scope="DEMO")
    await converged(b, c, collection="answers")
    await c.verify()


async def test_numbers_read_the_same_on_every_node(cluster: Cluster) -> None:
    # A CRDT number is a double: integers beyond 2**53 are refused at write time (store them
    # as text), so every node reads every stored number the same way.
    a, b = await _pair(cluster)
    with pytest.raises(StoreError, match="2\\*\\*53"):
        await a.store.put("events/e0", {"at": a.store.clock.now()}, scope="DEMO")
    await a.store.put("events/e1", {"at": 2**53, "small": 12, "ratio": 0.5,
                                    "nested": {"n": -(2**53)}}, scope="DEMO")
    await converged(a, b, collection="events")
    here, there = a.store.get("events/e1"), b.store.get("events/e1")
    assert here is not None and there is not None
    assert here.data == there.data
    assert json.dumps(here.data, sort_keys=True) == json.dumps(there.data, sort_keys=True)
    assert here.data["at"] == 2**53
    assert isinstance(there.data["at"], int)


async def test_a_large_catch_up_arrives_whole_through_a_small_window(cluster: Cluster) -> None:
    # Small batches and a window of 2 unacknowledged messages: back-pressure all the way.
    a = await (await cluster.init("a", config={"replication": {"batch": 40, "window": 2}})
               ).start()
    for start in range(0, 1200, 200):
        await asyncio.gather(*(a.store.put(f"answers/{i:05d}", {"v": i}, scope="DEMO")
                               for i in range(start, start + 200)))
    b = await (await cluster.join(a, "b")).start()
    await converged(a, b, collection="answers", timeout=30)
    assert len(records(b.store, "answers")) == 1200
    assert chains(b.store)[(a.public_key, "DEMO")] == 1201  # with a's roster record
    assert b.store.stats()["pending_entries"] == 0
    await b.verify()


async def test_mutual_static_peers_keep_one_stable_session(cluster: Cluster) -> None:
    a = await (await cluster.init("a")).start()
    b = await cluster.join(a, "b")
    await a.stop()
    # Both list the other (once as a URL): both dial, one session must win on both ends.
    cluster.configure(a, {"discovery": {"peers": [f"https://{b.repl_addr}/replicate"]}})
    await a.start()
    await b.start()
    await wait_until(lambda: a.peers() == {b.node_id} and b.peers() == {a.node_id},
                     what="one session")
    await asyncio.sleep(0.5)
    sa, sb = a.rep.sessions[b.node_id], b.rep.sessions[a.node_id]
    assert {sa.state.direction, sb.state.direction} == {"in", "out"}
    assert sa.dialer_id == sb.dialer_id == min(a.node_id, b.node_id)
    await stays(lambda: a.rep.sessions.get(b.node_id) is sa
                and b.rep.sessions.get(a.node_id) is sb, 2.0, "the same session stays")
    await a.store.put("answers/x", {"v": 1}, scope="DEMO")
    await converged(a, b, collection="answers")
