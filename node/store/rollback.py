"""Withdrawing a revoked signer's late deltas, the same way on every node.

When a revocation reaches a node that already stored deltas the revoked node
made after it was revoked (they travelled on another path during a
partition), those deltas must go, or that node would hold what every other
node refuses and the hall would never converge (DESIGN.md s9, invariants 1
and 4). The deltas are a suffix of each of the node's chains (its clock only
moves forward), so each chain is cut back to its last valid delta, the cut
deltas are quarantined with reason ``revoked``, and each record they touched
is rebuilt from the deltas that remain.
"""

from __future__ import annotations

import logging
from typing import Any

import msgpack
from pycrdt import Doc, Map

from node.store import layout
from node.store.context import WriteContext, pack_view
from node.store.delta import GENESIS, decode, encode
from node.store.hlc import hlc_millis
from node.store.records import ROOT, LiveRecord, fresh_client_id
from node.store.statevec import covers

log = logging.getLogger(__name__)


def withdraw_after(ctx: WriteContext, origin: bytes, cutoff_ms: int) -> int:
    """Remove ``origin``'s deltas made at or after ``cutoff_ms``; return how many."""
    txn, dbs = ctx.txn, ctx.dbs
    chains = [layout.split_chain_key(bytes(k)) for k in txn.cursor(db=dbs["vv"]).iternext(
        values=False) if bytes(k).startswith(origin)]
    touched: set[str] = set()
    removed = 0
    for chain_origin, scope in chains:
        if chain_origin != origin:
            continue
        prev, cut_from = GENESIS, None
        prefix = layout.log_prefix(origin, scope)
        doomed = []
        for kb, raw in _chain(txn, dbs, prefix):
            d = decode(raw)
            if cut_from is None and hlc_millis(d.hlc) >= cutoff_ms:
                cut_from = d.seq
            if cut_from is None:
                prev = d.hash
            else:
                doomed.append((kb, d))
        for kb, d in doomed:
            qkey = kb + d.hash
            txn.put(qkey, msgpack.packb([encode(d), "revoked"], use_bin_type=True),
                    db=dbs["quarantine"])
            txn.delete(kb, db=dbs["log"])
            touched.add(d.key)
            removed += 1
        if cut_from is not None:
            last = cut_from - 1
            chain_key = layout.chain_key(origin, scope)
            if last == 0:
                txn.delete(chain_key, db=dbs["vv"])
            else:
                txn.put(chain_key, msgpack.packb([last, prev]), db=dbs["vv"])
        for kb, _raw in list(_chain(txn, dbs, prefix, db="pending")):
            txn.delete(kb, db=dbs["pending"])
    for key in touched:
        _rebuild(ctx, key)
    if removed:
        log.warning("withdrew %d deltas a revoked node made after its revocation", removed)
    return removed


def _chain(txn: Any, dbs: dict[str, Any], prefix: bytes,
           db: str = "log") -> list[tuple[bytes, bytes]]:
    out = []
    with txn.cursor(db=dbs[db]) as cur:
        if cur.set_range(prefix):
            for kb, raw in cur:
                if not bytes(kb).startswith(prefix):
                    break
                out.append((bytes(kb), bytes(raw)))
    return out


def _rebuild(ctx: WriteContext, key: str) -> None:
    """Rebuild one record from the deltas left in the log."""
    txn, dbs = ctx.txn, ctx.dbs
    ctx.shared.cache.drop(key)
    kb = key.encode()
    old_raw = txn.get(kb, db=dbs["views"])
    old = msgpack.unpackb(old_raw, raw=False) if old_raw else None
    deltas = [d for d in (decode(bytes(raw)) for _k, raw in txn.cursor(db=dbs["log"]))
              if d.key == key]
    if not deltas:
        txn.delete(kb, db=dbs["records"])
        txn.delete(kb, db=dbs["views"])
        ctx.reindex(key, old["data"] if old else None, None)
        return
    scope = old["scope"] if old else deltas[0].scope
    doc: Doc[Any] = Doc(client_id=fresh_client_id())
    updates = [d.update for d in sorted(deltas, key=lambda d: d.hlc) if d.scope == scope]
    for update in updates:
        doc.apply_update(update)
    state = doc.get_update()
    rec = LiveRecord(scope, doc, doc.get(ROOT, type=Map),
                     [u for u in updates if not covers(state, u)])
    view = rec.view()
    last = max(deltas, key=lambda d: d.hlc)
    txn.put(kb, rec.state(), db=dbs["records"])
    txn.put(kb, pack_view(scope, last.hlc, last.user, view), db=dbs["views"])
    ctx.reindex(key, old["data"] if old else None, view)
