"""The change feed: feed_since from LMDB and live subscribers, fast and slow."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from node.identity import Identity
from node.store import FeedEvent, Store
from tests.store.conftest import OpenStore
from tests.store.helpers import SCOPE, chain_envelopes, trust


async def _collect(it: AsyncIterator[FeedEvent], n: int, delay: float = 0.0) -> list[FeedEvent]:
    out: list[FeedEvent] = []
    async for ev in it:
        out.append(ev)
        if len(out) == n:
            break
        if delay:
            await asyncio.sleep(delay)
    return out


async def _started(it: AsyncIterator[FeedEvent], n: int, delay: float = 0.0
                   ) -> asyncio.Task[list[FeedEvent]]:
    """Start a consumer task and let it reach its first wait on the feed."""
    task = asyncio.create_task(_collect(it, n, delay), name="test-feed-consumer")
    for _ in range(3):
        await asyncio.sleep(0)
    return task


def _ident(ev: FeedEvent) -> tuple[int, str, str, bytes, int, int]:
    return (ev.feed_no, ev.key, ev.scope, ev.origin, ev.seq, ev.hlc)


async def test_feed_since_lists_stored_deltas_in_arrival_order(open_store: OpenStore) -> None:
    a, b = open_store("a"), open_store("b")
    await trust(b, a)
    mine = [await b.put(f"cand/{i}", {"i": i}, scope=SCOPE) for i in range(3)]
    await a.put("exam/1", {"x": 1}, scope="global")
    await b.apply_remote(chain_envelopes(a, "global"))
    events = b.feed_since(0)
    assert [e.feed_no for e in events] == [1, 2, 3, 4]
    assert [(e.key, e.scope, e.seq, e.hlc) for e in events[:3]] == [
        (r.key, r.scope, r.seq, r.hlc) for r in mine]
    assert all(e.origin == b.identity.public_key for e in events[:3])
    assert (events[3].key, events[3].origin, events[3].seq) == ("exam/1", a.identity.public_key, 1)
    assert [e.feed_no for e in b.feed_since(2)] == [3, 4]
    assert [e.feed_no for e in b.feed_since(0, limit=2)] == [1, 2]
    assert b.feed_since(4) == []
    assert b.feed_head() == 4


async def test_subscriber_gets_live_events_in_order(store: Store) -> None:
    async with contextlib.aclosing(store.subscribe()) as it:
        task = await _started(it, 6)
        results = [await store.put(f"cand/{i % 3}", {"i": i}, scope=SCOPE) for i in range(6)]
        events = await asyncio.wait_for(task, 10)
    assert [(e.key, e.seq, e.hlc) for e in events] == [(r.key, r.seq, r.hlc) for r in results]
    assert [e.feed_no for e in events] == [1, 2, 3, 4, 5, 6]
    # The live events and the stored feed agree, field for field.
    assert [_ident(e) for e in events] == [_ident(e) for e in store.feed_since(0)]


async def test_slow_subscriber_with_tiny_queue_loses_nothing(store: Store) -> None:
    total = 300
    async with contextlib.aclosing(store.subscribe(maxsize=2)) as slow, \
            contextlib.aclosing(store.subscribe()) as fast:
        slow_task = await _started(slow, total, delay=0.001)
        fast_task = await _started(fast, total)
        before = store.stats()["write_batches"]
        # Two bursts of concurrent writes: the writer batches them, so batches are
        # bigger than maxsize and the slow subscriber must take the lagged path.
        await asyncio.gather(*[store.put(f"cand/{i}", {"i": i}, scope=SCOPE)
                               for i in range(total // 2)])
        await asyncio.sleep(0.05)
        await asyncio.gather(*[store.put(f"cand/{i}", {"i": -1 - i}, scope=SCOPE)
                               for i in range(total // 2)])
        batches = store.stats()["write_batches"] - before
        try:
            fast_events = await asyncio.wait_for(fast_task, 10)
            slow_events = await asyncio.wait_for(slow_task, 10)
        finally:
            slow_task.cancel()
    assert batches * 2 < total, "no batch was larger than the slow subscriber's queue"
    assert [e.feed_no for e in slow_events] == list(range(1, total + 1))
    assert [_ident(e) for e in slow_events] == [_ident(e) for e in fast_events]
    assert [_ident(e) for e in slow_events] == [
        _ident(e) for e in store.feed_since(0, limit=total)]


async def test_subscription_sees_writes_made_right_after_subscribe(store: Store) -> None:
    # BUG: Store.subscribe returns an async generator, so the subscriber is only
    # registered (and its starting feed number read) at the first __anext__; a
    # write committed between subscribe() and the first read is silently skipped.
    async with contextlib.aclosing(store.subscribe()) as it:
        await store.put("cand/1", {"a": 1}, scope=SCOPE)
        ev = await asyncio.wait_for(anext(it), 1)
    assert (ev.key, ev.feed_no) == ("cand/1", 1)


async def test_close_ends_subscriptions(open_store: OpenStore) -> None:
    store = open_store("a")
    async with contextlib.aclosing(store.subscribe()) as it:
        task = await _started(it, 100)
        await store.put("cand/1", {"a": 1}, scope=SCOPE)
        store.close()
        events = await asyncio.wait_for(task, 5)
    assert [e.key for e in events] == ["cand/1"]


async def test_reopened_store_object_feeds_subscribers_again(open_store: OpenStore) -> None:
    # BUG: Store.close() closes self.feed for good and Store.open() does not make a new
    # Feed, so after close()+open() of the same Store object every subscription ends
    # at once (restore-from-backup reopens a store this way).
    store = open_store("a", identity=Identity.generate())
    store.close()
    store.open()
    async with contextlib.aclosing(store.subscribe()) as it:
        task = await _started(it, 1)
        await store.put("cand/1", {"a": 1}, scope=SCOPE)
        events = await asyncio.wait_for(task, 5)
    assert [e.key for e in events] == ["cand/1"]
