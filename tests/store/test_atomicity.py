"""A write is all or nothing, alone and inside a group-committed batch."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from pycrdt import Map

from node.store import Store
from node.store.verify import verify_store
from tests.store.conftest import OpenStore
from tests.store.helpers import SCOPE, all_envelopes, trust


class Boom(Exception):
    """What a failing mutate raises."""


def _half_then_fail(root: Map[Any]) -> None:
    root["a"] = 10
    root["c"] = 3
    root["sub"] = Map({"deep": 1})
    raise Boom("mutate failed half way")


def _counts(store: Store) -> tuple[Any, ...]:
    st = store.stats()
    return (store.feed_head(), store.version_vector(), st["log_entries"], st["records_entries"],
            st["views_entries"], st["feed_entries"])


async def _replica_data(open_store: OpenStore, store: Store, key: str) -> dict[str, Any]:
    """Return ``key`` as a fresh node sees it after applying everything ``store`` logged."""
    replica = open_store("replica")
    await trust(replica, store)
    results = await replica.apply_remote(all_envelopes(store))
    assert {r.status for r in results} == {"applied"}
    assert replica.stats()["pending_entries"] == 0
    view = replica.get(key)
    assert view is not None
    return view.data


async def test_failed_mutate_leaves_no_partial_state(open_store: OpenStore) -> None:
    store = open_store("a")
    await store.put("cand/1", {"a": 1, "b": 2}, scope=SCOPE)
    before, view_before = _counts(store), store.get("cand/1")
    with pytest.raises(Boom):
        await store.change("cand/1", _half_then_fail)
    assert store.get("cand/1") == view_before
    assert _counts(store) == before

    r = await store.put("cand/1", {"b": 20})
    assert r.changed and r.seq == 2
    assert r.view == store.get("cand/1").data == {"a": 1, "b": 20}
    # The next delta carries nothing of the failed attempt: a fresh node agrees.
    assert await _replica_data(open_store, store, "cand/1") == {"a": 1, "b": 20}
    assert verify_store(store).ok


async def test_failed_create_creates_nothing(store: Store) -> None:
    before = _counts(store)
    with pytest.raises(Boom):
        await store.change("cand/new", _half_then_fail, scope=SCOPE)
    assert store.get("cand/new", include_deleted=True) is None
    assert _counts(store) == before
    # Nothing fixed its scope either.
    r = await store.put("cand/new", {"x": 1}, scope="global")
    assert (r.scope, r.seq, r.view) == ("global", 1, {"x": 1})


async def test_failure_inside_a_batch_spares_the_other_writes(open_store: OpenStore) -> None:
    store = open_store("a")
    await store.put("cand/hot", {"a": 1}, scope=SCOPE)
    gate = threading.Event()

    def wait_then_write(root: Map[Any]) -> None:
        gate.wait(10)  # hold the writer so the next writes queue up into one batch
        root["gate"] = True

    batches = store.stats()["write_batches"]
    first = asyncio.ensure_future(store.change("cand/gate", wait_then_write, scope=SCOPE))
    await asyncio.sleep(0.02)
    writes: list[asyncio.Future[Any]] = []
    for i in range(40):
        if i == 20:  # the failing write touches the same record as its neighbours
            writes.append(asyncio.ensure_future(store.change("cand/hot", _half_then_fail)))
        writes.append(asyncio.ensure_future(store.put("cand/hot", {f"f{i}": i})))
        writes.append(asyncio.ensure_future(store.put(f"cand/{i}", {"i": i}, scope=SCOPE)))
    await asyncio.sleep(0.02)
    gate.set()
    await first
    results = await asyncio.gather(*writes, return_exceptions=True)

    assert store.stats()["write_batches"] - batches <= 2  # the writes shared a batch
    failed = [r for r in results if isinstance(r, BaseException)]
    assert len(failed) == 1 and isinstance(failed[0], Boom)
    ok = [r for r in results if not isinstance(r, BaseException)]
    assert len(ok) == 80 and all(r.changed for r in ok)
    assert sorted(r.seq for r in ok) == list(range(3, 83))  # no seq spent on the failure
    hot = {"a": 1, **{f"f{i}": i for i in range(40)}}
    assert store.get("cand/hot").data == hot
    assert all(store.get(f"cand/{i}").data == {"i": i} for i in range(40))
    assert store.feed_head() == 82
    assert await _replica_data(open_store, store, "cand/hot") == hot
    report = verify_store(store)
    assert report.ok, report.problems


async def test_record_recovers_after_repeated_failures(store: Store) -> None:
    await store.put("cand/1", {"n": 0}, scope=SCOPE)
    for i in range(1, 6):
        with pytest.raises(Boom):
            await store.change("cand/1", _half_then_fail)
        await store.put("cand/1", {"n": i})
    assert store.get("cand/1").data == {"n": 5}
    assert [d.seq for d in store.deltas(store.identity.public_key, SCOPE)] == list(range(1, 7))
    report = verify_store(store)
    assert report.ok, report.problems
