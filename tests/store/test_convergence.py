"""Convergence (DESIGN.md section 9, invariants 1 and 3), as a Hypothesis property.

Several origins change the same few records, syncing with each other now and
then so that their changes build on each other. Every envelope any of them
holds is then applied to fresh stores in arbitrary orders, with duplicates,
in chunks, across restarts or with a one-record Doc cache. All stores must end
with equal views, equal version vectors and nothing pending.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pycrdt import Map

from node.identity import Identity
from node.store import Store, StoreOptions
from node.store.verify import verify_store
from tests.store.conftest import TEST_OPTIONS
from tests.store.helpers import all_envelopes, snapshot, sync

SCOPE_OF = {"cand/0": "S1", "cand/1": "S1", "exam/0": "global"}
KEYS = sorted(SCOPE_OF)
COLLECTIONS = ["cand", "exam"]
FIELDS = ["a", "b"]
ORIGINS = 3
# This property is about merge order, not durability (test_durability covers that):
# on tmpfs each example's dozens of fsyncs cost nothing.
FAST_TMP = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
# 50 keeps the suite fast; raise it (e.g. STORE_PROPERTY_EXAMPLES=500) for a deeper search.
EXAMPLES = int(os.environ.get("STORE_PROPERTY_EXAMPLES", "50"))

values = st.one_of(st.integers(-1000, 1000), st.text(max_size=3), st.booleans(),
                   st.lists(st.integers(0, 9), max_size=2))
origin_ix = st.integers(0, ORIGINS - 1)
# Each step: an origin first pulls what another origin holds (often), then writes,
# so that writes build on other origins' items and depend on them.
steps = st.lists(
    st.tuples(
        origin_ix,
        st.one_of(st.none(), origin_ix),
        st.sampled_from(["set", "set", "nest", "nest", "tomb"]),
        st.sampled_from(KEYS),
        st.sampled_from(FIELDS),
        values,
    ),
    min_size=1, max_size=20,
)


def _nest(field: str, value: Any) -> Any:
    def mutate(root: Map[Any]) -> None:
        sub = root.get("sub")
        if isinstance(sub, Map):
            sub[field] = value
        else:
            root["sub"] = Map({field: value})
    return mutate


async def _run_step(stores: list[Store], step: tuple[Any, ...]) -> None:
    who, pull, kind, key, field, value = step
    s = stores[who]
    if pull is not None and pull != who:
        await sync(s, stores[pull])
    if kind == "set":
        await s.put(key, {field: value}, scope=SCOPE_OF[key])
    elif kind == "nest":
        await s.change(key, _nest(field, value), scope=SCOPE_OF[key])
    elif s.get(key, include_deleted=True) is not None:  # "tomb"
        await s.delete(key)


class _Stores:
    """Opens the stores of one example; every one is closed when the stack unwinds."""

    def __init__(self, root: Path, stack: contextlib.ExitStack) -> None:
        self.root = root
        self.stack = stack

    def new(self, name: str, identity: Identity, cache_size: int = 100) -> Store:
        s = Store(self.root / name, identity,
                  StoreOptions(map_size=TEST_OPTIONS.map_size, cache_size=cache_size))
        self.stack.callback(s.close)  # close() is idempotent and safe before open()
        s.open()
        return s

    def reopen(self, s: Store) -> Store:
        s.close()
        return self.new(s.path.parent.name, s.identity, s.options.cache_size)


async def _trust(store: Store, keys: list[bytes]) -> None:
    # Concurrent calls share one writer batch: one fsync instead of one per key.
    await asyncio.gather(*(asyncio.to_thread(store.trust, k) for k in keys))


async def _apply_in_chunks(stores: _Stores, target: Store, envelopes: list[bytes],
                           cuts: list[int], restart: bool) -> Store:
    start = 0
    for cut in [*sorted(cuts), len(envelopes)]:
        results = await target.apply_remote(envelopes[start:cut])
        assert all(r.status in ("applied", "duplicate", "held") for r in results), results
        start = cut
        if restart:
            target = stores.reopen(target)
    return target


async def _example(root: Path, script: list[tuple[Any, ...]], data: st.DataObject) -> None:
    with contextlib.ExitStack() as stack:
        stores = _Stores(root, stack)
        origins = [stores.new(f"origin{i}", Identity.generate()) for i in range(ORIGINS)]
        keys = [o.identity.public_key for o in origins]
        for o in origins:
            await _trust(o, keys)
        for step in script:
            await _run_step(origins, step)
        envelopes = [env for o in origins for env in all_envelopes(o)]

        targets = []
        for name, cache_size, restart in [("t-restart", 100, True), ("t-evict", 1, False)]:
            t = stores.new(name, Identity.generate(), cache_size)
            await _trust(t, keys)
            # Orders come from a drawn seed: how many envelopes there are depends on
            # how concurrent writes merged, which depends on random CRDT client ids.
            rnd = random.Random(data.draw(st.integers(0, 2**32), label=f"{name} seed"))
            order = envelopes + [rnd.choice(envelopes) for _ in range(rnd.randint(0, 8))
                                 if envelopes]
            rnd.shuffle(order)
            cuts = [rnd.randint(0, len(order)) for _ in range(rnd.randint(0, 4))]
            targets.append(await _apply_in_chunks(stores, t, order, cuts, restart))

        # The origins converge too once everyone has talked to everyone.
        for dst in origins:
            for src in origins:
                if dst is not src:
                    await sync(dst, src)

        everyone = {"origin0": origins[0], "origin1": origins[1], "origin2": origins[2],
                    "t-restart": targets[0], "t-evict": targets[1]}
        expected = snapshot(origins[0], KEYS, COLLECTIONS)
        for name, s in everyone.items():
            assert snapshot(s, KEYS, COLLECTIONS) == expected, name
            assert s.stats()["pending_entries"] == 0, name
            assert s.quarantined() == [], name
        for t in targets:  # a replay of each log must match what the store holds
            report = verify_store(t)
            assert report.ok, report.problems


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(script=steps, data=st.data())
def test_any_order_with_duplicates_converges(script: list[tuple[Any, ...]],
                                             data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory(dir=FAST_TMP) as tmp:
        asyncio.run(_example(Path(tmp), script, data))
