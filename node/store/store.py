"""The store facade: open, start, stop, write through the writer, read views.

Writes go through ``Writer`` (one thread, group commit); reads open short
LMDB read transactions on the caller's thread and only ever see materialized
views, never a live ``Doc``.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lmdb
import msgpack

from node.errors import StoreError
from node.identity import Identity
from node.store import layout, txns
from node.store.context import IndexFn, Shared, WriteContext
from node.store.delta import Delta, decode
from node.store.feed import Feed
from node.store.hlc import HybridClock
from node.store.records import DELETED, DocCache
from node.store.results import ApplyResult, ChainResult, ChangeResult, FeedEvent
from node.store.writer import Writer

log = logging.getLogger(__name__)

STORE_DIR = "store"

TrustPolicy = Callable[[lmdb.Transaction, bytes, str, int], "str | None"]


@dataclass(frozen=True)
class StoreOptions:
    """Tuning of one store; see ``node.config.StoreConfig`` for the meaning."""

    map_size: int = 8 * 1024**3
    max_batch: int = 1000
    cache_size: int = 10_000
    max_pending: int = 100_000
    max_readers: int = 256


@dataclass(frozen=True)
class View:
    """A record as readers see it."""

    key: str
    scope: str
    hlc: int
    user: str
    data: dict[str, Any]

    @property
    def deleted(self) -> bool:
        return bool(self.data.get(DELETED))


def _view(key: bytes, raw: bytes) -> View:
    v = msgpack.unpackb(raw, raw=False)
    return View(key.decode(), v["scope"], v["hlc"], v["user"], v["data"])


class Store:
    """One node's LMDB store of signed CRDT records (DESIGN.md sections 4-6)."""

    def __init__(self, data_dir: Path, identity: Identity, options: StoreOptions | None = None):
        self.path = Path(data_dir) / STORE_DIR
        self.identity = identity
        self.options = options or StoreOptions()
        # Built in: which records reference which blob (replication fetches missing ones).
        self._indexes: dict[str, dict[str, IndexFn]] = {
            layout.ALL: {"blobs": layout.blob_refs}}
        self._env: lmdb.Environment | None = None
        self._writer: Writer | None = None
        self._shared: Shared | None = None
        self.feed = Feed()
        self._trust_extra: TrustPolicy | None = None
        self._may_write: Callable[[str], bool] = lambda scope: True
        self._hooks: list[tuple[str, Any]] = []

    # --- lifecycle ------------------------------------------------------------------------

    def declare_index(self, collection: str, name: str, fn: IndexFn) -> None:
        """Declare a secondary index on a collection (before ``open``)."""
        if self._env is not None:
            raise StoreError("declare indexes before the store is opened")
        self._indexes.setdefault(collection, {})[name] = fn

    def open(self) -> None:
        """Open (or create) the LMDB environment and start the writer thread."""
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        opts = self.options
        env = lmdb.open(
            str(self.path), map_size=opts.map_size, max_dbs=len(layout.DB_NAMES) + 2,
            max_readers=opts.max_readers, sync=True, metasync=True, subdir=True,
            readahead=False,
        )
        with env.begin(write=True) as txn:
            # One transaction (one fsync) for every named database.
            dbs = {name: env.open_db(name.encode(), txn=txn) for name in layout.DB_NAMES}
            schema = txn.get(layout.META_SCHEMA, db=dbs["meta"])
            if schema is None:
                txn.put(layout.META_SCHEMA, msgpack.packb(layout.SCHEMA_VERSION), db=dbs["meta"])
            elif msgpack.unpackb(schema) != layout.SCHEMA_VERSION:
                env.close()
                raise StoreError(f"{self.path}: store schema {msgpack.unpackb(schema)} "
                                 f"is not {layout.SCHEMA_VERSION}")
            last = txn.get(layout.META_HLC, db=dbs["meta"])
            restored = txn.get(layout.META_RESTORED, db=dbs["meta"]) is not None
        self._env = env
        self._dbs = dbs
        self._shared = Shared(
            env=env, dbs=dbs, identity=self.identity,
            clock=HybridClock(msgpack.unpackb(last) if last else 0),
            cache=DocCache(opts.cache_size), indexes=self._indexes,
            max_pending=opts.max_pending, restored=restored,
            may_write=self._may_write, hooks=self._hooks,
        )
        self.feed.reopen()
        self._writer = Writer(env, self._make_context, self._finish_batch,
                              max_batch=opts.max_batch)
        self._writer.start()
        log.info("store open at %s (client id %d)", self.path, self._shared.client_id)

    def close(self) -> None:
        """Finish queued writes, stop the writer and close the environment."""
        if self._writer is not None:
            self._writer.stop()
            self._writer = None
        self.feed.close()
        if self._env is not None:
            self._env.close()
            self._env = None
        if self._shared is not None:
            self._shared.cache.clear()

    def __enter__(self) -> Store:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def env(self) -> lmdb.Environment:
        if self._env is None:
            raise StoreError("the store is not open")
        return self._env

    @property
    def writer(self) -> Writer:
        if self._writer is None:
            raise StoreError("the store is not open")
        return self._writer

    @property
    def clock(self) -> HybridClock:
        assert self._shared is not None
        return self._shared.clock

    @property
    def client_id(self) -> int:
        assert self._shared is not None
        return self._shared.client_id

    def _make_context(self, txn: lmdb.Transaction) -> WriteContext:
        assert self._shared is not None
        return WriteContext(self._shared, txn)

    def _finish_batch(self, ctx: WriteContext, committed: bool) -> None:
        if not committed:
            assert self._shared is not None
            for key in ctx.touched:
                self._shared.cache.drop(key)
            return
        if ctx.events:
            self.feed.publish(ctx.events)

    # --- writes ---------------------------------------------------------------------------

    async def change(
        self,
        key: str,
        mutate: txns.Mutator,
        *,
        scope: str | None = None,
        user: str = "",
        create: bool = True,
    ) -> ChangeResult:
        """Change record ``key`` with ``mutate(root_map)``; return once durable."""
        result: ChangeResult = await self.writer.submit(
            txns.change_txn, key, mutate, scope, user, create)
        return result

    async def put(self, key: str, fields: dict[str, Any], *, scope: str | None = None,
                  user: str = "") -> ChangeResult:
        """Set plain fields of record ``key`` (creating it in ``scope``)."""
        result: ChangeResult = await self.writer.submit(txns.put_txn, key, fields, scope, user)
        return result

    async def delete(self, key: str, *, user: str = "") -> ChangeResult:
        """Tombstone record ``key``: it stays in the log and reads as deleted."""
        def mutate(root: Any) -> None:
            root[DELETED] = True
        return await self.change(key, mutate, user=user, create=False)

    async def apply_remote(self, envelopes: Iterable[bytes]) -> list[ApplyResult]:
        """Verify and apply deltas from elsewhere, in order; one result each."""
        futs = [self.writer.submit(txns.apply_delta_txn, raw, self.allowed)
                for raw in envelopes]
        return list(await asyncio.gather(*futs))

    async def apply_chain(self, origin: bytes, scope: str, items: list[Any]) -> ChainResult:
        """Apply a run of one chain's deltas in wire form; see ``txns.apply_chain_txn``."""
        result: ChainResult = await self.writer.submit(
            txns.apply_chain_txn, origin, scope, items, self.allowed)
        return result

    def apply_chain_nowait(self, origin: bytes, scope: str,
                           items: list[Any]) -> asyncio.Future[ChainResult]:
        """Queue ``apply_chain`` and return its future at once (writer order is kept)."""
        fut: asyncio.Future[ChainResult] = self.writer.submit(
            txns.apply_chain_txn, origin, scope, items, self.allowed)
        return fut

    def apply_chain_sync(self, origin: bytes, scope: str, items: list[Any]) -> ChainResult:
        """``apply_chain`` for code outside an event loop (bundle import)."""
        result: ChainResult = self.writer.call(
            txns.apply_chain_txn, origin, scope, items, self.allowed)
        return result

    def chain_items(self, origin: bytes, scope: str, after: int = 0,
                    limit: int = 1000) -> list[list[Any]]:
        """Return up to ``limit`` deltas after ``after`` in wire form (no prev)."""
        return [[d.seq, d.key, d.update, d.user, d.hlc, d.sig]
                for d in self.deltas(origin, scope, after, limit)]

    def apply_remote_sync(self, envelopes: Iterable[bytes]) -> list[ApplyResult]:
        """``apply_remote`` for code that runs outside an event loop (CLI)."""
        return [self.writer.call(txns.apply_delta_txn, raw, self.allowed) for raw in envelopes]

    async def put_blob(self, data: bytes) -> str:
        """Store a blob durably; return its SHA-256 hex digest."""
        digest: str = await self.writer.submit(txns.put_blob_txn, data)
        return digest

    def trust(self, public_key: bytes, label: str = "") -> None:
        """Accept deltas signed by ``public_key`` (blocking; CLI and tests)."""
        self.writer.call(txns.trust_txn, public_key, label)

    def set_trust_policy(self, policy: TrustPolicy,
                         may_write: Callable[[str], bool] | None = None) -> None:
        """Install the check of signers, and of the scopes this node may sign in."""
        self._trust_extra = policy
        if may_write is not None:
            self._may_write = may_write
            if self._shared is not None:
                self._shared.may_write = may_write

    def allowed(self, origin: bytes, scope: str, hlc: int = 0,
                txn: lmdb.Transaction | None = None) -> str | None:
        """Return None if ``origin`` may sign deltas in ``scope`` at ``hlc``, else why not.

        The node's own key and keys given to ``trust`` are accepted; any other
        signer is decided by the installed trust policy, or refused.
        """
        if txn is None:
            with self.env.begin() as own:
                return self.allowed(origin, scope, hlc, own)
        if origin == self.identity.public_key or \
                txn.get(layout.META_TRUST_PREFIX + origin, db=self._dbs["meta"]) is not None:
            return None
        if self._trust_extra is not None:
            return self._trust_extra(txn, origin, scope, hlc)
        return "unknown_signer"

    async def add_signers(self, signers: list[tuple[bytes, bytes]]) -> None:
        """Store (public key, certificate chain) pairs already verified by the caller."""
        await self.writer.submit(txns.put_signers_txn, signers)

    def add_signers_sync(self, signers: list[tuple[bytes, bytes]]) -> None:
        """``add_signers`` for code outside an event loop."""
        self.writer.call(txns.put_signers_txn, signers)

    def signer(self, public_key: bytes, txn: lmdb.Transaction | None = None) -> bytes | None:
        """Return the stored certificate chain blob of a signer, or None."""
        if txn is None:
            with self.env.begin() as own:
                return self.signer(public_key, own)
        raw = txn.get(public_key, db=self._dbs["signers"])
        return None if raw is None else bytes(raw)

    def signers(self) -> dict[bytes, bytes]:
        """Return every stored signer."""
        with self.env.begin() as txn:
            return {bytes(k): bytes(v) for k, v in txn.cursor(db=self._dbs["signers"])}

    def view_in(self, txn: lmdb.Transaction, key: str) -> View | None:
        """Return the view of ``key`` inside an open transaction (for trust policies)."""
        raw = txn.get(key.encode(), db=self._dbs["views"])
        return None if raw is None else _view(key.encode(), bytes(raw))

    def add_hook(self, prefix: str, hook: Any) -> None:
        """Run ``hook(ctx, key, view)`` in the writer after a record under ``prefix`` changed."""
        if all(h is not hook for _p, h in self._hooks):
            self._hooks.append((prefix, hook))

    @property
    def restored(self) -> bool:
        """True while a node restored from backup waits for its own later deltas."""
        return self._shared is not None and self._shared.restored

    async def clear_restored(self) -> None:
        """Allow local writes again (the node caught up its own chains)."""
        await self.writer.submit(txns.clear_restored_txn)

    def rebuild_indexes(self) -> int:
        """Rebuild all secondary indexes (blocking)."""
        written: int = self.writer.call(txns.reindex_txn)
        return written

    # --- reads ----------------------------------------------------------------------------

    def get(self, key: str, *, include_deleted: bool = False) -> View | None:
        """Return the materialized view of ``key``, or None."""
        if not key or len(key.encode()) > 511:
            return None
        with self.env.begin() as txn:
            raw = txn.get(key.encode(), db=self._dbs["views"])
        if raw is None:
            return None
        view = _view(key.encode(), raw)
        return None if view.deleted and not include_deleted else view

    def scan(self, collection: str, *, include_deleted: bool = False) -> Iterator[View]:
        """Yield every record of a collection in key order."""
        prefix = f"{collection}/".encode()
        with self.env.begin() as txn, txn.cursor(db=self._dbs["views"]) as cur:
            if not cur.set_range(prefix):
                return
            for kb, raw in cur:
                if not kb.startswith(prefix):
                    break
                view = _view(kb, raw)
                if include_deleted or not view.deleted:
                    yield view

    def lookup(self, collection: str, index: str, value: str) -> list[str]:
        """Return the record keys whose ``index`` has ``value``."""
        if index not in self._indexes.get(collection, {}):
            raise StoreError(f"no index {index} on {collection}")
        prefix = layout.index_prefix(collection, index, value)
        keys = []
        with self.env.begin() as txn, txn.cursor(db=self._dbs["idx"]) as cur:
            if cur.set_range(prefix):
                for kb in cur.iternext(keys=True, values=False):
                    if not kb.startswith(prefix):
                        break
                    keys.append(kb[len(prefix):].decode())
        return keys

    def blob_referrers(self, digest_hex: str) -> list[View]:
        """Return the records that reference a blob (to check who may fetch it)."""
        views = [self.get(k) for k in self.lookup(layout.ALL, "blobs", digest_hex)]
        return [v for v in views if v is not None]

    def missing_blobs(self, limit: int = 10_000) -> set[str]:
        """Return blobs that records reference but this node does not hold yet."""
        prefix = layout.index_prefix(layout.ALL, "blobs")
        out: set[str] = set()
        with self.env.begin() as txn, txn.cursor(db=self._dbs["idx"]) as cur:
            if not cur.set_range(prefix):
                return out
            for kb in cur.iternext(keys=True, values=False):
                kb = bytes(kb)
                if not kb.startswith(prefix) or len(out) >= limit:
                    break
                digest = kb[len(prefix):].split(b"\x00", 1)[0].decode()
                try:
                    raw = bytes.fromhex(digest)
                except ValueError:
                    continue
                if txn.get(raw, db=self._dbs["blobs"]) is None:
                    out.add(digest)
        return out

    def has_blob(self, digest_hex: str) -> bool:
        """Return True when the blob is stored here."""
        try:
            digest = bytes.fromhex(digest_hex)
        except ValueError:
            return False
        if len(digest) != 32:
            return False
        with self.env.begin() as txn:
            return txn.get(digest, db=self._dbs["blobs"]) is not None

    async def put_blob_verified(self, digest_hex: str, data: bytes) -> bool:
        """Store a blob received from a peer if its SHA-256 matches; return success."""
        import hashlib

        if hashlib.sha256(data).hexdigest() != digest_hex:
            return False
        await self.put_blob(data)
        return True

    def get_blob(self, digest_hex: str) -> bytes | None:
        """Return the blob with this SHA-256 hex digest, or None."""
        try:
            digest = bytes.fromhex(digest_hex)
        except ValueError:
            return None
        if len(digest) != 32:
            return None
        with self.env.begin(buffers=False) as txn:
            data: bytes | None = txn.get(digest, db=self._dbs["blobs"])
        return data

    def version_vector(self) -> dict[tuple[bytes, str], int]:
        """Return {(origin, scope): last contiguous seq} for every chain held."""
        out = {}
        with self.env.begin() as txn, txn.cursor(db=self._dbs["vv"]) as cur:
            for kb, raw in cur:
                out[layout.split_chain_key(kb)] = int(msgpack.unpackb(raw)[0])
        return out

    def deltas(self, origin: bytes, scope: str, after: int = 0,
               limit: int | None = None) -> Iterator[Delta]:
        """Yield a chain's deltas with seq > ``after``, in order."""
        prefix = layout.log_prefix(origin, scope)
        start = layout.log_key(origin, scope, after + 1)
        n = 0
        with self.env.begin() as txn, txn.cursor(db=self._dbs["log"]) as cur:
            if not cur.set_range(start):
                return
            for kb, raw in cur:
                if not kb.startswith(prefix) or (limit is not None and n >= limit):
                    break
                n += 1
                yield decode(bytes(raw))

    def raw_deltas(self, origin: bytes, scope: str, after: int = 0) -> Iterator[bytes]:
        """Yield a chain's stored envelopes with seq > ``after``, in order."""
        prefix = layout.log_prefix(origin, scope)
        with self.env.begin() as txn, txn.cursor(db=self._dbs["log"]) as cur:
            if not cur.set_range(layout.log_key(origin, scope, after + 1)):
                return
            for kb, raw in cur:
                if not kb.startswith(prefix):
                    break
                yield bytes(raw)

    def feed_since(self, feed_no: int, limit: int = 1000) -> list[FeedEvent]:
        """Return stored feed events after local arrival number ``feed_no``."""
        out: list[FeedEvent] = []
        with self.env.begin() as txn, txn.cursor(db=self._dbs["feed"]) as cur:
            if not cur.set_range(layout.SEQ.pack(feed_no + 1)):
                return out
            for kb, raw in cur:
                origin, scope, seq, key, hlc = msgpack.unpackb(raw, raw=False)
                out.append(FeedEvent(layout.SEQ.unpack(kb)[0], key, scope, origin, seq, hlc))
                if len(out) >= limit:
                    break
        return out

    def feed_head(self) -> int:
        """Return the local arrival number of the newest stored delta (0 if none)."""
        with self.env.begin() as txn:
            raw = txn.get(layout.META_FEED, db=self._dbs["meta"])
        return int(msgpack.unpackb(raw)) if raw else 0

    def subscribe(self, maxsize: int = 10_000) -> AsyncIterator[FeedEvent]:
        """Return a live iterator of feed events (see ``Feed.subscribe``)."""
        return self.feed.subscribe(self, maxsize)

    def stats(self) -> dict[str, Any]:
        """Return entry counts, sizes and writer counters, for status pages."""
        env = self.env
        out: dict[str, Any] = {}
        with env.begin() as txn:
            for name, db in self._dbs.items():
                out[f"{name}_entries"] = txn.stat(db)["entries"]
        info = env.info()
        out["map_size"] = info["map_size"]
        out["used_bytes"] = (info["last_pgno"] + 1) * env.stat()["psize"]
        try:
            out["file_bytes"] = os.path.getsize(self.path / "data.mdb")
        except OSError:
            out["file_bytes"] = 0
        if self._writer is not None:
            out["write_batches"] = self._writer.batches
            out["write_items"] = self._writer.items
        return out

    def quarantined(self) -> list[dict[str, Any]]:
        """Return the quarantined deltas (forks, scope conflicts) with reasons."""
        out: list[dict[str, Any]] = []
        with self.env.begin() as txn, txn.cursor(db=self._dbs["quarantine"]) as cur:
            for _kb, raw in cur:
                envelope, reason = msgpack.unpackb(raw, raw=False)
                d = decode(envelope)
                out.append({"reason": reason, "origin": d.origin.hex(), "scope": d.scope,
                            "seq": d.seq, "key": d.key, "hlc": d.hlc})
        return out
