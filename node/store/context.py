"""The writer's view of one batch: the open transaction and shared state.

A ``WriteContext`` is made by the store for every batch and handed to each
``*_txn`` function. It holds the helpers that keep records, views, indexes,
the delta log, the version vector and the change feed in step, so that no
txn function can update one without the others.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import lmdb
import msgpack

from node.identity import Identity
from node.store import layout
from node.store.delta import GENESIS, Delta, encode
from node.store.hlc import HybridClock
from node.store.records import DELETED, DocCache, LiveRecord, fresh_client_id, load_record
from node.store.results import FeedEvent

IndexFn = Callable[[dict[str, Any]], Iterable[Any]]  # values are str()-ed; None is skipped


@dataclass
class Shared:
    """State that lives across batches, owned by the writer thread."""

    env: lmdb.Environment
    dbs: dict[str, Any]
    identity: Identity
    clock: HybridClock
    cache: DocCache
    indexes: dict[str, dict[str, IndexFn]]
    client_id: int = field(default_factory=fresh_client_id)
    max_pending: int = 100_000
    restored: bool = False  # restored from backup and not yet caught up (see backup.py)
    # Run inside the writer's transaction after a record with this key prefix changed.
    hooks: list[tuple[str, Callable[[WriteContext, str, dict[str, Any]], None]]] = \
        field(default_factory=list)
    may_write: Callable[[str], bool] = lambda scope: True
    spec_cache: dict[str, Any] = field(default_factory=dict)  # collection -> index specs


class WriteContext:
    """One batch of the writer; see the module docstring."""

    def __init__(self, shared: Shared, txn: lmdb.Transaction) -> None:
        self.shared = shared
        self.txn = txn
        self.dbs = shared.dbs
        self.events: list[FeedEvent] = []
        self._item_events: list[FeedEvent] = []
        self._item_touched: set[str] = set()
        self.touched: set[str] = set()
        self._feed_no: int | None = None

    # --- item lifecycle, driven by the writer -----------------------------------------

    def begin_item(self) -> None:
        self._item_events = []
        self._item_touched = set()

    def commit_item(self) -> None:
        self.events.extend(self._item_events)
        self.touched |= self._item_touched

    def abort_item(self) -> None:
        # A failed item may have changed live documents; forget them so the next
        # access reloads what is on disk, with a fresh client id (never reuse a
        # (client id, clock) pair, DESIGN.md section 4).
        for key in self._item_touched:
            self.shared.cache.drop(key)
        self.shared.client_id = fresh_client_id()

    def before_commit(self) -> None:
        self.txn.put(layout.META_HLC, msgpack.packb(self.shared.clock.last), db=self.dbs["meta"])
        if self._feed_no is not None:
            # A number used by an item that then failed is simply skipped (a gap is fine).
            self.txn.put(layout.META_FEED, msgpack.packb(self._feed_no), db=self.dbs["meta"])

    # --- records ------------------------------------------------------------------------

    def load(self, key: str) -> LiveRecord | None:
        """Return the live record for ``key`` (from cache or disk), or None."""
        self._item_touched.add(key)
        rec = self.shared.cache.get(key)
        if rec is not None:
            return rec
        raw = self.txn.get(key.encode(), db=self.dbs["records"])
        if raw is None:
            return None
        rec = load_record(bytes(raw), self.shared.client_id)
        self.shared.cache.put(key, rec)
        return rec

    def remember(self, key: str, rec: LiveRecord) -> None:
        """Put a newly created live record into the cache."""
        self._item_touched.add(key)
        self.shared.cache.put(key, rec)

    def head(self, origin: bytes, scope: str) -> tuple[int, bytes]:
        """Return (last seq, head hash) of a chain, (0, GENESIS) if empty."""
        raw = self.txn.get(layout.chain_key(origin, scope), db=self.dbs["vv"])
        if raw is None:
            return 0, GENESIS
        seq, head = msgpack.unpackb(raw)
        return int(seq), bytes(head)

    def append(self, delta: Delta, rec: LiveRecord | None,
               view: dict[str, Any] | None = None, digest: bytes | None = None) -> None:
        """Store a verified delta, and the record it changed, in one step."""
        txn, dbs = self.txn, self.dbs
        txn.put(layout.log_key(delta.origin, delta.scope, delta.seq), encode(delta),
                db=dbs["log"])
        txn.put(layout.chain_key(delta.origin, delta.scope),
                msgpack.packb([delta.seq, digest or delta.hash]), db=dbs["vv"])
        if rec is not None:
            rec.stored = True
            txn.put(delta.key.encode(), rec.state(), db=dbs["records"])
            view = rec.view() if view is None else view
            self._write_view(delta, rec, view)
            for prefix, hook in self.shared.hooks:
                if delta.key.startswith(prefix):
                    hook(self, delta.key, view)
        if self._feed_no is None:  # read once per batch, written back before commit
            self._feed_no = int(msgpack.unpackb(txn.get(layout.META_FEED, b"\x00",
                                                        db=dbs["meta"])))
        self._feed_no += 1
        feed_no = self._feed_no
        txn.put(layout.SEQ.pack(feed_no),
                msgpack.packb([delta.origin, delta.scope, delta.seq, delta.key, delta.hlc]),
                db=dbs["feed"])
        self._item_events.append(
            FeedEvent(feed_no, delta.key, delta.scope, delta.origin, delta.seq, delta.hlc)
        )

    def _write_view(self, delta: Delta, rec: LiveRecord, new: dict[str, Any]) -> None:
        txn, dbs = self.txn, self.dbs
        kb = delta.key.encode()
        specs = index_specs(self.shared.indexes, delta.key, self.shared.spec_cache)
        if specs:
            before = rec.indexed
            if before is None:  # not known in memory: read what the stored view indexed
                old_raw = txn.get(kb, db=dbs["views"])
                old = msgpack.unpackb(old_raw, raw=False)["data"] if old_raw else None
                before = {(c, n): index_values(fn, old) for c, n, fn in specs}
            rec.indexed = self._reindex_values(delta.key, specs, before, new)
        txn.put(kb, pack_view(rec.scope, delta.hlc, delta.user, new), db=dbs["views"])

    def _reindex_values(self, key: str, specs: Specs,
                        before: dict[tuple[str, str], set[str]],
                        new: dict[str, Any] | None) -> dict[tuple[str, str], set[str]]:
        after_all = {}
        for collection, name, fn in specs:
            old_values = before.get((collection, name), set())
            after = index_values(fn, new)
            after_all[(collection, name)] = after
            for value in old_values - after:
                self.txn.delete(layout.index_key(collection, name, value, key), db=self.dbs["idx"])
            for value in after - old_values:
                self.txn.put(layout.index_key(collection, name, value, key), b"",
                             db=self.dbs["idx"])
        return after_all

    def reindex(self, key: str, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        """Replace the index entries of ``key`` computed from ``old`` by ``new``'s."""
        specs = index_specs(self.shared.indexes, key, self.shared.spec_cache)
        before = {(c, n): index_values(fn, old) for c, n, fn in specs}
        self._reindex_values(key, specs, before, new)
        self.shared.cache.drop(key)  # its remembered index values may be stale now


Specs = list[tuple[str, str, IndexFn]]


def index_specs(indexes: dict[str, dict[str, IndexFn]], key: str,
                cache: dict[str, Specs] | None = None) -> Specs:
    """Return (index collection, name, fn) of every index that covers record ``key``.

    Indexes are declared before a store opens and never change after, so the
    writer passes a per-store ``cache``.
    """
    collection = layout.collection_of(key)
    out = cache.get(collection) if cache is not None else None
    if out is None:
        out = [(collection, name, fn) for name, fn in indexes.get(collection, {}).items()]
        out += [(layout.ALL, name, fn) for name, fn in indexes.get(layout.ALL, {}).items()]
        if cache is not None:
            cache[collection] = out
    return out


def pack_view(scope: str, hlc: int, user: str, data: dict[str, Any]) -> bytes:
    """Encode a materialized view."""
    out: bytes = msgpack.packb({"scope": scope, "hlc": hlc, "user": user, "data": data},
                               use_bin_type=True)
    return out


def index_values(fn: IndexFn, data: dict[str, Any] | None) -> set[str]:
    """Return the index values of a view; deleted records have none."""
    if not data or data.get(DELETED):
        return set()
    try:
        return {str(v) for v in fn(data) if v is not None}
    except (KeyError, TypeError, ValueError, AttributeError):
        return set()
