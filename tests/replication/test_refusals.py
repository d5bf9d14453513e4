"""What a node refuses on the wire, from certified and uncertified peers (DESIGN.md s3, s5, s9).

A ``RawPeer`` holds a real certificate of the deployment (a node made with
``join`` that never runs) and speaks the protocol by hand.
"""

from __future__ import annotations

import asyncio
import ssl
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from node.identity import Identity
from node.replication.manager import PATH
from node.replication.tls import client_context
from node.replication.wire import pack
from node.runtime import open_context
from node.store.verify import verify_store
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

Items = list[list[Any]]


async def _centre(cluster: Cluster) -> tuple[Node, Node, Path]:
    """Return running nodes a and b of centre DEMO and the data dir of a certified rogue."""
    a = await (await cluster.init("a")).start()
    b = await (await cluster.join(a, "b")).start()
    rogue = await cluster.join(a, "rogue")
    await wait_until(lambda: b.node_id in a.peers(), what="b connected")
    return a, b, rogue.data


async def _signed(data: Path, writes: list[tuple[str, dict[str, Any], str]],
                  identity: Identity | None = None) -> dict[str, Items]:
    """Sign ``writes`` (key, fields, scope) with the key in ``data``; return wire items."""
    with offline_store(data, identity) as store:
        for key, fields, scope in writes:
            await store.put(key, fields, scope=scope)
        me = store.identity.public_key
        return {s: store.chain_items(me, s) for s in {w[2] for w in writes}}


def _flip(b: bytes) -> bytes:
    return b[:-1] + bytes([b[-1] ^ 1])


def _snapshot(node: Node) -> tuple[Any, ...]:
    stats = node.store.stats()
    return (chains(node.store), stats["log_entries"], stats["views_entries"],
            stats["pending_entries"], stats["quarantine_entries"])


async def test_tampered_replayed_and_forked_deltas(
        cluster: Cluster, raw_peer: Callable[[Path], RawPeer], tmp_path: Path) -> None:
    a, b, rogue = await _centre(cluster)
    items = (await _signed(rogue, [("candidates/9", {"name": "Mira"}, "DEMO"),
                                   ("candidates/9", {"name": "Mira K"}, "DEMO")]))["DEMO"]
    me = open_context(rogue).identity.public_key
    peer = raw_peer(rogue)
    await peer.connect(a)
    before = _snapshot(a)

    # A bad signature, a changed field under the old signature: refused, nothing stored.
    bad_sig = [[*items[0][:5], _flip(items[0][5])]]
    ack = await peer.chain(me, "DEMO", bad_sig)
    assert (ack["r"], ack["head"]) == ("bad_signature", 0)
    changed = [[1, "candidates/9", items[0][2], "admin", items[0][4], items[0][5]]]
    assert (await peer.chain(me, "DEMO", changed))["r"] == "bad_signature"
    other_key = [[1, "candidates/10", *items[0][2:]]]
    assert (await peer.chain(me, "DEMO", other_key))["r"] == "bad_signature"
    assert _snapshot(a) == before
    assert a.store.get("candidates/9") is None

    # The genuine deltas apply, and a replay of either changes nothing.
    ack = await peer.chain(me, "DEMO", items)
    assert (ack["r"], ack["head"]) == ("", 2)
    assert a.store.get("candidates/9").data == {"name": "Mira K"}  # type: ignore[union-attr]
    applied = _snapshot(a)
    for replay in ([items[0]], items, [items[1]]):
        ack = await peer.chain(me, "DEMO", replay)
        assert (ack["r"], ack["head"]) == ("", 2)
    assert _snapshot(a) == applied
    assert a.store.get("candidates/9").data == {"name": "Mira K"}  # type: ignore[union-attr]
    await wait_until(lambda: b.store.get("candidates/9") is not None, what="relay to b")

    # Out of order: a run that starts past the head is refused as a gap and not kept.
    more = (await _signed(rogue, [(f"candidates/g{i}", {"i": i}, "DEMO") for i in range(3)]))
    later = more["DEMO"][2:]  # seqs 3..5 of the rogue's chain
    assert [it[0] for it in later] == [3, 4, 5]
    ack = await peer.chain(me, "DEMO", later[1:])
    assert (ack["r"], ack["head"]) == ("gap", 2)
    assert a.store.stats()["pending_entries"] == 0 and a.store.get("candidates/g1") is None
    assert (await peer.chain(me, "DEMO", later))["head"] == 5

    # A second, different delta 1 signed with the same key is a fork: quarantined, not merged.
    fork_items = (await _signed(tmp_path / "fork", [("candidates/9", {"name": "Evil"}, "DEMO")],
                                identity=open_context(rogue).identity))["DEMO"]
    ack = await peer.chain(me, "DEMO", fork_items)
    assert ack["head"] == 5
    assert [q["reason"] for q in a.store.quarantined()] == ["fork"]
    assert a.store.get("candidates/9").data == {"name": "Mira K"}  # type: ignore[union-attr]
    report = await asyncio.to_thread(verify_store, a.store)
    assert report.ok and report.quarantined == 1, report


async def test_unknown_signer_and_foreign_scope_are_refused(
        cluster: Cluster, raw_peer: Callable[[Path], RawPeer], tmp_path: Path) -> None:
    a, b, rogue = await _centre(cluster)
    stranger = Identity.generate()
    (tmp_path / "stranger").mkdir()
    s_items = (await _signed(tmp_path / "stranger", [("candidates/1", {"x": 1}, "DEMO")],
                             identity=stranger))["DEMO"]
    peer = raw_peer(rogue)
    await peer.connect(a)
    before = _snapshot(a)

    ack = await peer.chain(stranger.public_key, "DEMO", s_items)
    assert (ack["r"], ack["head"]) == ("unknown_signer", 0)
    # A certificate for the stranger from a different authority does not help.
    other = await cluster.init("elsewhere", center="DEMO")
    foreign_chain = open_context(other.data).trust.chain_der  # type: ignore[union-attr]
    await peer.send({"t": "certs", "chains": [foreign_chain]})
    assert (await peer.chain(stranger.public_key, "DEMO", s_items))["r"] == "unknown_signer"
    assert (await peer.chain(other.public_key, "DEMO", s_items))["r"] == "unknown_signer"

    # A certified node of DEMO signing for a centre this node does not hold.
    me = open_context(rogue).identity.public_key
    o_items = (await _signed(rogue, [("candidates/2", {"x": 2}, "OTHER")]))["OTHER"]
    assert (await peer.chain(me, "OTHER", o_items))["r"] in ("scope", "scope_not_allowed")
    assert _snapshot(a) == before
    assert a.store.get("candidates/1") is None and a.store.get("candidates/2") is None
    # The session survived every refusal: a genuine delta still goes through.
    good = (await _signed(rogue, [("candidates/3", {"x": 3}, "DEMO")]))["DEMO"]
    assert (await peer.chain(me, "DEMO", good))["r"] == ""
    await wait_until(lambda: b.store.get("candidates/3") is not None, what="relay to b")
    await stays(lambda: (stranger.public_key, "DEMO") not in chains(b.store), 0.3)
    await a.verify()
    await b.verify()


def _garbage(other_leaf: bytes) -> list[tuple[str, bool, Callable[[RawPeer], Any]]]:
    """Return (what, sent after hello, send) for each kind of garbage."""
    a_chain = {"t": "chain", "n": 1, "o": b"x" * 32, "s": "DEMO", "d": []}
    return [
        ("random bytes", True, lambda p: p.send_raw(b"\xc1\x00garbage\xff" * 10)),
        ("truncated message", True, lambda p: p.send_raw(pack(a_chain)[:-5])),
        ("unknown type", True, lambda p: p.send_raw(pack({"t": "boom"}))),
        ("not a map", True, lambda p: p.send_raw(pack([1, 2, 3]))),  # type: ignore[arg-type]
        ("text frame", True, lambda p: p.ws.send_str("hello")),
        ("garbage instead of hello", False, lambda p: p.send_raw(b"\x00\x01\x02")),
        ("chain instead of hello", False, lambda p: p.send(a_chain)),
        ("hello without chain", False,
         lambda p: p.send({"t": "hello", "id": "x", "chain": [], "vv": []})),
        ("hello with another node's chain", False,
         lambda p: p.send({"t": "hello", "id": "x", "chain": [other_leaf], "vv": []})),
        ("hello with a malformed version vector", False,
         lambda p: p.send({"t": "hello", "id": "x", "chain": p.cert_chain, "vv": [[1, 2]]})),
    ]


async def test_garbage_closes_the_session_and_the_node_keeps_serving(
        cluster: Cluster, raw_peer: Callable[[Path], RawPeer]) -> None:
    a, b, rogue = await _centre(cluster)
    b_leaf = open_context(b.data).trust.chain_der[0]  # type: ignore[union-attr]
    for what, after_hello, send in _garbage(b_leaf):
        peer = raw_peer(rogue)
        await peer.connect(a, hello=after_hello)
        await send(peer)
        assert await peer.closed(timeout=5), f"{what}: the session stayed open"
        await peer.close()
        status, health = await cluster.get(a, "/api/health/")
        assert status == 200 and health["status"] == "ok", what
    assert b.node_id in a.peers()
    await wait_until(lambda: all(len(s.state.refused) == 0 for s in a.rep.sessions.values()),
                     what="no refusals counted against b")
    await a.store.put("exams/after-garbage", {"ok": True}, scope="DEMO")
    await converged(a, b, collection="exams")
    assert a.peers() == {b.node_id}


async def test_malformed_chain_items_are_refused_without_harm(
        cluster: Cluster, raw_peer: Callable[[Path], RawPeer]) -> None:
    a, _b, rogue = await _centre(cluster)
    me = open_context(rogue).identity.public_key
    peer = raw_peer(rogue)
    await peer.connect(a)
    before = _snapshot(a)
    for items in ([[1, 2]], [5], [["1", "candidates/1", b"", "", 1, b"s" * 64]],
                  [[1, "Bad Key", b"\x00\x00", "", 1, b"s" * 64]],
                  [[2**64 - 1, "candidates/1", b"\x00\x00", "", 1, b"s" * 64]]):
        ack = await peer.chain(me, "DEMO", items)
        assert ack["r"] and ack["head"] == 0, (items, ack)
    assert (await peer.chain(b"short", "DEMO", []))["r"] == "malformed"
    assert _snapshot(a) == before


async def test_a_negative_sequence_number_is_refused_like_other_malformed_input(
        cluster: Cluster, raw_peer: Callable[[Path], RawPeer]) -> None:
    a, _b, rogue = await _centre(cluster)
    me = open_context(rogue).identity.public_key
    peer = raw_peer(rogue)
    await peer.connect(a)
    ack = await peer.chain(me, "DEMO", [[-1, "candidates/1", b"\x00\x00", "", 1, b"s" * 64]],
                           timeout=3)
    assert ack["r"] == "malformed"


async def test_a_certs_message_cannot_make_the_node_allocate_memory(
        cluster: Cluster, raw_peer: Callable[[Path], RawPeer]) -> None:
    a, _b, rogue = await _centre(cluster)
    peer = raw_peer(rogue)
    await peer.connect(a)
    size = 64 * 1024 * 1024  # small enough to be safe here; 2**33 would take 8 GiB
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        await peer.send({"t": "certs", "chains": [[size]]})
        await peer.send({"t": "ping", "ts": 1.0, "vv": []})
        while (msg := await peer.recv()) is not None and msg["t"] != "pong":
            pass  # the ping is read after the certs: its pong means they were handled
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < size // 2, f"handling one 10-byte message allocated {peak >> 20} MiB"


async def _talk(url: str, context: ssl.SSLContext) -> None:
    """Open a websocket and exchange one message; raise if the server let us in."""
    async with aiohttp.ClientSession() as http, http.ws_connect(
            url, ssl=context, timeout=aiohttp.ClientWSTimeout(ws_receive=5)) as ws:
        raise AssertionError(f"the peer port let us in: {ws}")


async def test_tls_refuses_clients_without_a_deployment_certificate(
        cluster: Cluster, raw_peer: Callable[[Path], RawPeer]) -> None:
    a, b, _rogue = await _centre(cluster)
    url = f"https://{a.repl_addr}{PATH}"

    bare = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    bare.check_hostname = False
    bare.verify_mode = ssl.CERT_NONE
    # A valid certificate, but from another deployment's authority (the server's own
    # certificate is not checked here, so only the server's verdict counts).
    other = await cluster.init("elsewhere", center="DEMO")
    octx = open_context(other.data)
    assert octx.trust is not None
    foreign = client_context(octx.identity, octx.trust, other.data)
    foreign.verify_mode = ssl.CERT_NONE
    for context in (bare, foreign):
        with pytest.raises((aiohttp.ClientError, ssl.SSLError, ConnectionError)) as refused:
            await _talk(url, context)
        # Refused by TLS itself: no HTTP answer at all, not even a 403.
        assert not isinstance(refused.value, aiohttp.ClientResponseError), refused.value
    # Plain HTTP to the TLS port gets nothing either.
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.ClientError):
            async with http.get(f"http://{a.repl_addr}{PATH}") as resp:
                await resp.read()
    status, _ = await cluster.get(a, "/api/health/")
    assert status == 200
    assert b.node_id in a.peers()
    await a.store.put("exams/still", {"ok": True}, scope="DEMO")
    await converged(a, b, collection="exams")
    assert records(b.store, "exams") == {"exams/still": {"ok": True}}

