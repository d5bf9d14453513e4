"""Applying a chain in wire form (Store.chain_items / Store.apply_chain): no prev on the wire."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from node.store import Store
from node.store.delta import decode, make_delta
from node.store.verify import verify_store
from tests.store.conftest import OpenStore
from tests.store.helpers import SCOPE, chain_envelopes, flip, trust


@pytest.fixture
async def origin(open_store: OpenStore) -> Store:
    """A store with a four-delta chain in SCOPE."""
    s = open_store("origin")
    for i in range(4):
        await s.put(f"cand/{i % 2}", {"n": i}, scope=SCOPE, user=f"u{i}")
    return s


@pytest.fixture
async def receiver(open_store: OpenStore, origin: Store) -> Store:
    s = open_store("receiver")
    await trust(s, origin)
    return s


def _items(origin: Store, after: int = 0) -> list[list[Any]]:
    return origin.chain_items(origin.identity.public_key, SCOPE, after)


async def test_chain_items_apply_and_replay_as_duplicates(origin: Store, receiver: Store) -> None:
    pk = origin.identity.public_key
    items = _items(origin)
    assert [i[0] for i in items] == [1, 2, 3, 4]
    assert [i[0] for i in origin.chain_items(pk, SCOPE, after=1, limit=2)] == [2, 3]
    r = await receiver.apply_chain(pk, SCOPE, items)
    assert (r.applied, r.duplicate, r.forked, r.rejected, r.head) == (4, 0, 0, 0, 4)
    assert receiver.get("cand/0").data == origin.get("cand/0").data == {"n": 2}
    # The receiver rebuilt each prev and stored envelopes identical to the origin's.
    assert chain_envelopes(receiver, origin=pk) == chain_envelopes(origin)
    again = await receiver.apply_chain(pk, SCOPE, items)
    assert (again.applied, again.duplicate, again.head) == (0, 4, 4)
    report = verify_store(receiver)
    assert report.ok, report.problems


async def test_a_gap_stops_the_run(origin: Store, receiver: Store) -> None:
    pk = origin.identity.public_key
    await receiver.apply_chain(pk, SCOPE, _items(origin)[:1])
    r = await receiver.apply_chain(pk, SCOPE, _items(origin, after=2))
    assert (r.applied, r.rejected, r.reason, r.head) == (0, 1, "gap", 1)
    assert receiver.stats()["pending_entries"] == 0  # nothing is held on this path
    r = await receiver.apply_chain(pk, SCOPE, _items(origin, after=1))
    assert (r.applied, r.head) == (3, 4)


async def test_held_deltas_are_released_by_a_chain_run(origin: Store, receiver: Store) -> None:
    pk = origin.identity.public_key
    await receiver.apply_remote(chain_envelopes(origin)[2:])  # seq 3 and 4 held
    r = await receiver.apply_chain(pk, SCOPE, _items(origin)[:2])
    assert (r.applied, r.head) == (4, 4)
    assert receiver.stats()["pending_entries"] == 0
    assert receiver.get("cand/1").data == {"n": 3}


@pytest.mark.parametrize("index", [2, 3, 5], ids=["update", "user", "sig"])
async def test_a_tampered_item_stops_the_run(origin: Store, receiver: Store, index: int) -> None:
    items = _items(origin)
    bad = list(items[1])
    bad[index] = flip(bad[index]) if isinstance(bad[index], bytes) else bad[index] + "x"
    r = await receiver.apply_chain(origin.identity.public_key, SCOPE, [items[0], bad, *items[2:]])
    assert (r.applied, r.rejected, r.reason, r.head) == (1, 1, "bad_signature", 1)
    assert receiver.get("cand/1") is None


async def test_unknown_signer_is_refused(open_store: OpenStore, origin: Store) -> None:
    stranger = open_store("stranger")
    r = await stranger.apply_chain(origin.identity.public_key, SCOPE, _items(origin))
    assert (r.applied, r.rejected, r.reason, r.head) == (0, 1, "unknown_signer", 0)
    assert stranger.version_vector() == {}


@pytest.mark.parametrize(
    ("origin_key", "scope", "item", "reason"),
    [
        (b"short", SCOPE, None, "malformed"),
        (None, "bad scope", None, "bad_scope"),
        (None, SCOPE, [1, "cand/0"], "malformed"),
        (None, SCOPE, "not a list", "malformed"),
        (None, SCOPE, [True, "cand/0", b"", "", 1, b"\x00" * 64], "malformed"),
        (None, SCOPE, [0, "cand/0", b"", "", 1, b"\x00" * 64], "malformed"),
        (None, SCOPE, [1, "NoKey", b"", "", 1, b"\x00" * 64], "bad_key"),
        (None, SCOPE, [1, "cand/0", "text", "", 1, b"\x00" * 64], "malformed"),
    ],
)
async def test_malformed_runs_are_refused(origin: Store, receiver: Store, origin_key: Any,
                                          scope: str, item: Any, reason: str) -> None:
    items = _items(origin) if item is None else [item]
    r = await receiver.apply_chain(origin_key or origin.identity.public_key, scope, items)
    assert (r.applied, r.rejected, r.reason) == (0, 1, reason)
    assert receiver.version_vector() == {}


async def test_a_different_item_for_a_held_seq_is_a_fork(origin: Store, receiver: Store) -> None:
    pk = origin.identity.public_key
    await receiver.apply_chain(pk, SCOPE, _items(origin))
    third = decode(chain_envelopes(origin)[2])
    twin = make_delta(origin.identity, scope=SCOPE, seq=3, prev=third.prev, key=third.key,
                      update=decode(chain_envelopes(origin)[0]).update, user="twin",
                      hlc=third.hlc + 1)
    r = await receiver.apply_chain(pk, SCOPE, [[3, twin.key, twin.update, twin.user, twin.hlc,
                                                twin.sig]])
    assert (r.applied, r.forked, r.head) == (0, 1, 4)
    assert [(q["seq"], q["reason"]) for q in receiver.quarantined()] == [(3, "fork")]
    assert receiver.get("cand/0").data == {"n": 2}


async def test_apply_chain_sync_works_off_the_loop(origin: Store, receiver: Store) -> None:
    r = await asyncio.to_thread(receiver.apply_chain_sync, origin.identity.public_key, SCOPE,
                                _items(origin))
    assert (r.applied, r.head) == (4, 4)
    assert receiver.get("cand/1").data == {"n": 3}
