"""Dead peers, reconnection and the replication status page (DESIGN.md s7, s8)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from tests.replication.conftest import (
    Cluster,
    Node,
    Proxy,
    converged,
    records,
    status_peer,
    wait_until,
)

QUICK = {"replication": {"heartbeat": 0.2, "dead_after": 1.0, "backoff_max": 0.5}}
STATUS = "/api/replication/status/"


async def test_a_silent_peer_is_dropped_and_rejoins_after_the_link_heals(
        cluster: Cluster, proxy: Callable[[Node], Awaitable[Proxy]]) -> None:
    a = await (await cluster.init("a", config=QUICK)).start()
    link = await proxy(a)
    b = await (await cluster.join(a, "b", peers=[link.addr], config=QUICK)).start()
    await wait_until(lambda: b.node_id in a.peers() and a.node_id in b.peers(),
                     what="connected through the proxy")

    # A pulled cable: no FIN, no RST, just silence. Heartbeats notice it.
    link.partition()
    cut = time.monotonic()
    await wait_until(lambda: not a.peers() and not b.peers(), timeout=5,
                     what="both ends to drop the silent peer")
    assert time.monotonic() - cut < 4

    async def gone_from_status() -> bool:
        status, body = await cluster.get(a, STATUS)
        assert status == 200
        return status_peer(body, b) is None

    await wait_until(gone_from_status, timeout=3, what="b gone from a's status page")
    await a.store.put("answers/while-cut", {"v": 1}, scope="DEMO")
    await b.store.put("answers/b-while-cut", {"v": 2}, scope="DEMO")

    link.heal()
    await wait_until(lambda: b.node_id in a.peers(), timeout=10, what="b to dial again")
    await converged(a, b, collection="answers")
    assert set(records(b.store, "answers")) == {"answers/while-cut", "answers/b-while-cut"}


async def test_a_stopped_node_is_redialled_when_it_returns_and_catches_up(
        cluster: Cluster) -> None:
    a = await (await cluster.init("a", config=QUICK)).start()
    b = await (await cluster.join(a, "b", config=QUICK)).start()
    await wait_until(lambda: b.node_id in a.peers(), what="b connected")
    await a.store.put("answers/a0", {"v": 0}, scope="DEMO")
    await converged(a, b, collection="answers")

    await a.stop()
    await wait_until(lambda: not b.peers(), timeout=5, what="b to see a gone")
    status, body = await cluster.get(b, STATUS)
    assert status == 200 and status_peer(body, a) is None
    assert body["dialing"][a.repl_addr] in ("connecting", "backoff")
    for i in range(5):
        await b.store.put(f"answers/b{i}", {"v": i}, scope="DEMO")
    await b.store.put("answers/a0", {"v": "changed by b"})

    # Same data dir, same ports: b's dialer (with backoff) finds it again.
    await a.start()
    await wait_until(lambda: a.node_id in b.peers(), timeout=10, what="b to reconnect")
    await converged(a, b, collection="answers")
    assert records(a.store, "answers")["answers/a0"] == {"v": "changed by b"}
    assert len(records(a.store, "answers")) == 6
    status, body = await cluster.get(b, STATUS)
    assert body["dialing"][a.repl_addr] == "connected"
    await a.verify()
    await b.verify()


def _settled(body: dict[str, Any], peer: Node) -> bool:
    p = status_peer(body, peer)
    return (p is not None and p["state"] == "connected" and p["behind_out"] == 0
            and p["behind_in"] == 0 and p["clock_offset_ms"] is not None
            and p["rtt_ms"] is not None)


async def test_replication_status_shows_peers_lag_and_clock_offset(
        cluster: Cluster, proxy: Callable[[Node], Awaitable[Proxy]]) -> None:
    a = await (await cluster.init("a", config=QUICK)).start()
    link = await proxy(a)
    b = await (await cluster.join(a, "b", peers=[link.addr], config={
        "replication": {"heartbeat": 0.2, "dead_after": 30.0}})).start()
    await wait_until(lambda: b.node_id in a.peers(), what="b connected")
    await a.store.put("answers/a0", {"v": 0}, scope="DEMO")
    await converged(a, b, collection="answers")

    async def settled(node: Node, peer: Node) -> bool:
        status, body = await cluster.get(node, STATUS)
        assert status == 200
        return _settled(body, peer)

    await wait_until(lambda: settled(a, b), what="a's status of b settled")
    await wait_until(lambda: settled(b, a), what="b's status of a settled")
    _, body = await cluster.get(a, STATUS)
    assert body["node_id"] == a.node_id and body["center"] == "DEMO"
    assert body["role"] == "node" and body["port"] == a.repl_port
    assert body["quarantined"] == []
    entry = status_peer(body, b)
    assert entry is not None
    assert entry["center"] == "DEMO" and entry["role"] == "node"
    assert entry["direction"] == "in" and entry["sent"] >= 1 and entry["received"] >= 1
    assert abs(entry["clock_offset_ms"]) < 1000  # one machine, one clock
    origins = {(row["origin"], row["scope"]) for row in body["version_vector"]}
    assert origins == {(a.node_id, "DEMO"), (b.node_id, "DEMO")}
    _, body_b = await cluster.get(b, STATUS)
    assert status_peer(body_b, a)["direction"] == "out"  # type: ignore[index]

    # With the link silent (and a long dead_after), a counts what b still lacks.
    link.partition()
    for i in range(5):
        await a.store.put(f"answers/lag{i}", {"v": i}, scope="DEMO")

    async def lagging() -> bool:
        _, body = await cluster.get(a, STATUS)
        entry = status_peer(body, b)
        return entry is not None and entry["behind_out"] == 5

    await wait_until(lagging, timeout=5, what="a to show b 5 deltas behind")
    link.heal()
    await converged(a, b, collection="answers")
    await wait_until(lambda: settled(a, b), what="a's status of b settled again")
    await wait_until(lambda: settled(b, a), what="b's status of a settled again")
