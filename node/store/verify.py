"""``examnode verify``: re-check every stored delta and recompute every view.

Checks, without trusting anything derived: each delta's signature and signer,
each chain's contiguity and hash links, the version vector against the log,
each record and materialized view against a replay of its deltas, and the
secondary indexes against the views. Read-only; safe on a serving node.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import msgpack
from pycrdt import Doc, Map

from node.errors import DeltaRejected
from node.store import layout
from node.store.context import index_specs, index_values
from node.store.delta import GENESIS, decode
from node.store.records import ROOT, load_record, normalize
from node.store.store import Store

MAX_PROBLEMS = 1000


@dataclass
class VerifyReport:
    """What ``verify_store`` found."""

    deltas: int = 0
    chains: int = 0
    records: int = 0
    index_entries: int = 0
    pending: int = 0
    quarantined: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def problem(self, text: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(text)


def verify_store(store: Store) -> VerifyReport:
    """Verify ``store`` from scratch; see the module docstring."""
    report = VerifyReport()
    dbs = store._dbs
    with store.env.begin() as txn:
        report.pending = txn.stat(dbs["pending"])["entries"]
        report.quarantined = txn.stat(dbs["quarantine"])["entries"]
        conflicts = _scope_conflicts(txn, dbs)
        by_key = _check_chains(store, txn, dbs, report)
        _check_records(txn, dbs, by_key, conflicts, report)
        _check_indexes(store, txn, dbs, report)
    return report


def _scope_conflicts(txn: Any, dbs: dict[str, Any]) -> set[bytes]:
    out = set()
    for qkey, raw in txn.cursor(db=dbs["quarantine"]):
        _envelope, reason = msgpack.unpackb(raw, raw=False)
        if reason == "scope_conflict":
            out.add(bytes(qkey[:-32]))
    return out


def _check_chains(store: Store, txn: Any, dbs: dict[str, Any],
                  report: VerifyReport) -> dict[str, list[bytes]]:
    """Check signatures and links; return record key -> its log keys, in log order."""
    by_key: dict[str, list[bytes]] = defaultdict(list)
    heads: dict[tuple[bytes, str], tuple[int, bytes]] = {}
    for kb, raw in txn.cursor(db=dbs["log"]):
        report.deltas += 1
        origin, scope, seq = layout.split_log_key(bytes(kb))
        where = f"delta {origin.hex()[:16]}/{scope}/{seq}"
        try:
            d = decode(bytes(raw))
            d.verify()
        except DeltaRejected as e:
            report.problem(f"{where}: {e.detail}")
            continue
        if (d.origin, d.scope, d.seq) != (origin, scope, seq):
            report.problem(f"{where}: stored under the wrong log key")
        reason = store.allowed(d.origin, d.scope, d.hlc, txn)
        if reason is not None:
            report.problem(f"{where}: signer not allowed ({reason})")
        last_seq, last_hash = heads.get((origin, scope), (0, GENESIS))
        if seq != last_seq + 1:
            report.problem(f"{where}: gap after seq {last_seq}")
        elif d.prev != last_hash:
            report.problem(f"{where}: does not link to its predecessor")
        heads[(origin, scope)] = (seq, d.hash)
        by_key[d.key].append(bytes(kb))
    report.chains = len(heads)
    stored_vv = {}
    for kb, raw in txn.cursor(db=dbs["vv"]):
        seq, head = msgpack.unpackb(raw)
        stored_vv[layout.split_chain_key(bytes(kb))] = (int(seq), bytes(head))
    if stored_vv != heads:
        report.problem(f"version vector disagrees with the log "
                       f"({len(stored_vv)} chains recorded, {len(heads)} in the log)")
    return by_key


def _check_records(txn: Any, dbs: dict[str, Any], by_key: dict[str, list[bytes]],
                   conflicts: set[bytes], report: VerifyReport) -> None:
    stored_keys = {bytes(k).decode() for k in txn.cursor(db=dbs["records"]).iternext(values=False)}
    view_keys = {bytes(k).decode() for k in txn.cursor(db=dbs["views"]).iternext(values=False)}
    for key in sorted(set(by_key) | stored_keys | view_keys):
        report.records += 1
        raw_rec = txn.get(key.encode(), db=dbs["records"])
        raw_view = txn.get(key.encode(), db=dbs["views"])
        if raw_rec is None or raw_view is None:
            report.problem(f"record {key}: missing its state or its view")
            continue
        rec = load_record(bytes(raw_rec), client_id=1)
        doc: Doc[Any] = Doc(client_id=2)
        for lk in by_key.get(key, []):
            if lk in conflicts:
                continue
            d = decode(bytes(txn.get(lk, db=dbs["log"])))
            if d.scope == rec.scope:
                doc.apply_update(d.update)
        replayed = normalize(doc.get(ROOT, type=Map).to_py())
        view = msgpack.unpackb(raw_view, raw=False)
        if replayed != rec.view():
            report.problem(f"record {key}: stored state differs from a replay of its deltas")
        if view["data"] != replayed:
            report.problem(f"record {key}: materialized view differs from its deltas")
        if view["scope"] != rec.scope:
            report.problem(f"record {key}: view scope {view['scope']} is not {rec.scope}")


def _check_indexes(store: Store, txn: Any, dbs: dict[str, Any], report: VerifyReport) -> None:
    expected: set[bytes] = set()
    for kb, raw in txn.cursor(db=dbs["views"]):
        key = bytes(kb).decode()
        data = msgpack.unpackb(raw, raw=False)["data"]
        for collection, name, fn in index_specs(store._indexes, key):
            for value in index_values(fn, data):
                expected.add(layout.index_key(collection, name, value, key))
    actual = {bytes(k) for k in txn.cursor(db=dbs["idx"]).iternext(values=False)}
    report.index_entries = len(actual)
    if actual != expected:
        report.problem(f"secondary indexes: {len(expected - actual)} entries missing, "
                       f"{len(actual - expected)} stale")
