"""The named write functions the writer thread runs (Synapse's ``*_txn`` style).

Each takes the batch's ``WriteContext`` first and runs inside its own nested
LMDB transaction: if it raises, nothing it did is kept.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from typing import Any

import msgpack
from pycrdt import Map

from node.errors import (
    DeltaRejected,
    NodeRecovering,
    NotFound,
    ScopeNotWritable,
    StoreError,
)
from node.store import layout
from node.store.context import WriteContext
from node.store.delta import Delta, check_key, check_scope, decode, encode, make_delta_hashed
from node.store.delta import check as check_delta
from node.store.records import LiveRecord, new_record, normalize
from node.store.results import ApplyResult, ApplyStatus, ChainResult, ChangeResult

log = logging.getLogger(__name__)

Mutator = Callable[[Map[Any]], Any]


def change_txn(
    ctx: WriteContext,
    key: str,
    mutate: Mutator,
    scope: str | None,
    user: str,
    create: bool,
) -> ChangeResult:
    """Apply a local change to record ``key`` and log it as one signed delta."""
    rec = _open_for_change(ctx, key, scope, create)
    before = rec.doc.get_state()
    try:
        with rec.doc.transaction(origin="local"):
            value = mutate(rec.root)
    except BaseException as e:
        if not _is_panic(e):
            raise
        raise StoreError(f"change to {key} failed: {e}") from e
    finally:
        rec.changed()
    for name, field_value in rec.view().items():
        _check_value(name, field_value)
    return _commit_local(ctx, key, rec, before, user, value)


def put_txn(ctx: WriteContext, key: str, fields: dict[str, Any], scope: str | None,
            user: str) -> ChangeResult:
    """Set plain fields of record ``key``, writing only those that differ."""
    for name, value in fields.items():
        if not isinstance(name, str):
            raise StoreError("field names must be text")
        _check_value(name, value)
    rec = _open_for_change(ctx, key, scope, True)
    current = rec.view() if rec.stored else {}
    changes = {k: v for k, v in fields.items() if current.get(k, _MISSING) != v}
    if not changes:
        if not rec.stored:
            ctx.shared.cache.drop(key)
        return ChangeResult(key, rec.scope, False, None, None, current)
    before = rec.doc.get_state()
    ok = False
    try:
        with rec.doc.transaction(origin="local"):
            for name, value in changes.items():
                rec.root[name] = value
        ok = True
    except BaseException as e:
        if not (isinstance(e, Exception) or _is_panic(e)):
            raise
        raise StoreError(f"cannot store {key}: {type(e).__name__}") from e
    finally:
        rec.changed()
    if ok:
        # The new view is known without reading the document back (the costly part).
        rec.set_view(normalize({**current, **changes}))
    return _commit_local(ctx, key, rec, before, user, None)


MAX_SAFE_INT = 2**53


def _is_panic(e: BaseException) -> bool:
    """Return True for pyo3's PanicException: yrs rejected a value (bad input, not a bug)."""
    return type(e).__name__ == "PanicException"


def _check_value(name: str, value: Any) -> None:
    """Refuse integers a CRDT number (a double) cannot hold exactly: they would read
    differently on other nodes. Store such numbers as text."""
    if isinstance(value, bool):
        return
    if isinstance(value, int | float) and abs(value) > MAX_SAFE_INT and \
            (isinstance(value, int) or value.is_integer()):
        raise StoreError(f"field {name}: integer beyond 2**53; store it as text")
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise StoreError(f"field {name}: map keys must be text")
            _check_value(f"{name}.{k}", v)
    elif isinstance(value, list | tuple):
        for v in value:
            _check_value(name, v)


_MISSING = object()
_EMPTY_UPDATE = b"\x00\x00"


def _open_for_change(ctx: WriteContext, key: str, scope: str | None,
                     create: bool) -> LiveRecord:
    check_key(key)
    rec = ctx.load(key)
    if rec is None:
        if not create:
            raise NotFound(f"record {key} does not exist")
        if scope is None:
            raise StoreError(f"a scope is needed to create {key}")
        rec = new_record(check_scope(scope), ctx.shared.client_id)
        ctx.remember(key, rec)
    elif scope is not None and scope != rec.scope:
        # A record's scope is fixed when it is created (DESIGN.md section 6).
        raise StoreError(f"{key} belongs to scope {rec.scope}, not {scope}")
    if not ctx.shared.may_write(rec.scope):
        # Peers would refuse the delta; refuse it here rather than diverge silently.
        raise ScopeNotWritable(f"this node may not write scope {rec.scope}")
    return rec


def _commit_local(ctx: WriteContext, key: str, rec: LiveRecord, before: bytes, user: str,
                  value: Any) -> ChangeResult:
    """Sign and store what changed in ``rec`` since state vector ``before``."""
    update = rec.doc.get_update(before)
    if update == _EMPTY_UPDATE:
        if not rec.stored:  # nothing was created: do not let the empty record fix a scope
            ctx.shared.cache.drop(key)
        return ChangeResult(key, rec.scope, False, None, None, rec.view(), value)
    if ctx.shared.restored:
        # Raising here aborts the item: the writer drops the changed document.
        raise NodeRecovering("this node was restored from a backup and is waiting for a peer "
                             "to return its own later changes; writes resume after that")
    shared = ctx.shared
    seq, head = ctx.head(shared.identity.public_key, rec.scope)
    delta, digest = make_delta_hashed(
        shared.identity, scope=rec.scope, seq=seq + 1, prev=head, key=key,
        update=update, user=user, hlc=shared.clock.now(),
    )
    view = rec.view()
    ctx.append(delta, rec, view, digest)
    return ChangeResult(key, rec.scope, True, delta.seq, delta.hlc, view, value)


Allowed = Callable[[bytes, str, int, Any], "str | None"]


def apply_delta_txn(ctx: WriteContext, raw: bytes, allowed: Allowed) -> ApplyResult:
    """Verify and apply one delta received from elsewhere (the replication path).

    ``allowed(origin, scope, hlc, txn)`` returns None when the signer may
    write that scope, else the reason it may not. Replays are no-ops; a gap holds the
    delta back until its predecessor arrives; a second, different delta for a
    (origin, scope, seq) already held is a fork and is quarantined.
    """
    try:
        d = decode(raw)
        reason = allowed(d.origin, d.scope, d.hlc, ctx.txn)
        if reason is not None:
            raise DeltaRejected(f"signer may not write scope {d.scope}: {reason}", reason=reason)
        d.verify()
    except DeltaRejected as e:
        log.warning("delta rejected (%s): %s", e.reason, e.detail)
        return ApplyResult(ApplyStatus.REJECTED, e.reason)
    head_seq, head_hash = ctx.head(d.origin, d.scope)
    if d.seq <= head_seq:
        stored = ctx.txn.get(layout.log_key(d.origin, d.scope, d.seq), db=ctx.dbs["log"])
        if stored is not None and decode(bytes(stored)).hash == d.hash:
            return ApplyResult(ApplyStatus.DUPLICATE)
        _quarantine(ctx, d, "fork")
        return ApplyResult(ApplyStatus.FORKED, "fork")
    if d.seq > head_seq + 1:
        return _hold(ctx, d)
    if d.prev != head_hash:
        _quarantine(ctx, d, "fork")
        return ApplyResult(ApplyStatus.FORKED, "fork")
    conflicts = _integrate(ctx, d)
    released, _head = _release_held(ctx, d, conflicts)
    return ApplyResult(ApplyStatus.APPLIED, released=released, conflicts=conflicts)


def _release_held(ctx: WriteContext, d: Delta, conflicts: list[str]) -> tuple[int, Delta]:
    """Let through the held-back deltas that ``d`` unblocked; return (count, new head)."""
    released = 0
    while True:
        nxt_key = layout.log_key(d.origin, d.scope, d.seq + 1)
        held = ctx.txn.get(nxt_key, db=ctx.dbs["pending"])
        if held is None:
            break
        ctx.txn.delete(nxt_key, db=ctx.dbs["pending"])
        nxt = decode(bytes(held))
        if nxt.prev != d.hash:
            _quarantine(ctx, nxt, "fork")
            break
        conflicts += _integrate(ctx, nxt)
        released += 1
        d = nxt
    return released, d


def apply_chain_txn(
    ctx: WriteContext, origin: bytes, scope: str, items: list[Any], allowed: Allowed
) -> ChainResult:
    """Apply consecutive deltas of one (origin, scope) chain sent without ``prev``.

    The wire and bundle form of a chain omits each delta's ``prev`` (32 bytes
    each): the receiver supplies the hash of the delta it holds before it, and
    the signature, which covers ``prev``, proves the link. Items are
    ``[seq, key, update, user, hlc, sig]``. Stops at the first gap or refusal.
    """
    out = ChainResult()
    try:
        if not isinstance(origin, bytes) or len(origin) != 32:
            raise DeltaRejected("origin is not an Ed25519 public key", reason="malformed")
        check_scope(scope)
    except DeltaRejected as e:
        out.refuse(e.reason)
        return out
    head_seq, head_hash = ctx.head(origin, scope)
    last: Delta | None = None
    for item in items:
        try:
            seq, key, update, user, hlc, sig = item
            if not isinstance(seq, int) or isinstance(seq, bool) or not 1 <= seq < 2**63:
                raise DeltaRejected("sequence number out of range", reason="malformed")
            prev = head_hash if seq == head_seq + 1 else None
            if seq <= head_seq:
                raw = ctx.txn.get(layout.log_key(origin, scope, seq), db=ctx.dbs["log"])
                if raw is None:
                    raise DeltaRejected("chain head points past the log", reason="corrupt")
                stored = decode(bytes(raw))
                prev = stored.prev
            elif prev is None:
                out.refuse("gap")
                break
            d = check_delta(Delta(origin, scope, seq, prev, key, update, user, hlc, sig))
            reason = allowed(origin, scope, hlc, ctx.txn)
            if reason is not None:
                raise DeltaRejected(f"signer may not write scope {scope}: {reason}",
                                    reason=reason)
            d.verify()
        except (DeltaRejected, ValueError, TypeError) as e:
            reason = e.reason if isinstance(e, DeltaRejected) else "malformed"
            log.warning("chain delta rejected (%s) scope=%s", reason, scope)
            out.refuse(reason)
            break
        if seq <= head_seq:
            if d.hash == stored.hash:
                out.duplicate += 1
            else:
                _quarantine(ctx, d, "fork")
                out.forked += 1
            continue
        out.conflicts += _integrate(ctx, d)
        out.applied += 1
        head_seq, head_hash, last = d.seq, d.hash, d
    if last is not None:
        released, _ = _release_held(ctx, last, out.conflicts)
        out.applied += released
    out.head = ctx.head(origin, scope)[0]
    return out


def _integrate(ctx: WriteContext, d: Delta) -> list[str]:
    """Apply a verified, in-order delta to its record and store it."""
    ctx.shared.clock.observe(d.hlc)
    rec = ctx.load(d.key)
    if rec is None:
        rec = new_record(d.scope, ctx.shared.client_id)
        ctx.remember(d.key, rec)
    elif rec.scope != d.scope:
        # Same key created in two scopes while partitioned: keep the chain whole,
        # leave the record alone, and report it for a person (DESIGN.md section 4).
        _quarantine(ctx, d, "scope_conflict")
        ctx.append(d, None)
        return [d.key]
    rec.apply(d.update)
    ctx.append(d, rec, rec.view())
    return []


def _hold(ctx: WriteContext, d: Delta) -> ApplyResult:
    key = layout.log_key(d.origin, d.scope, d.seq)
    held = ctx.txn.get(key, db=ctx.dbs["pending"])
    if held is not None:
        if decode(bytes(held)).hash == d.hash:
            return ApplyResult(ApplyStatus.HELD, "gap")
        _quarantine(ctx, d, "fork")  # a different delta for a seq already held: never merge
        return ApplyResult(ApplyStatus.FORKED, "fork")
    stat = ctx.txn.stat(ctx.dbs["pending"])
    if stat["entries"] >= ctx.shared.max_pending:
        return ApplyResult(ApplyStatus.REJECTED, "pending_full")
    ctx.txn.put(key, encode(d), db=ctx.dbs["pending"])
    return ApplyResult(ApplyStatus.HELD, "gap")


def _quarantine(ctx: WriteContext, d: Delta, reason: str) -> None:
    log.warning("delta quarantined (%s): key=%s scope=%s seq=%d", reason, d.key, d.scope, d.seq)
    qkey = layout.log_key(d.origin, d.scope, d.seq) + d.hash
    ctx.txn.put(qkey, msgpack.packb([encode(d), reason], use_bin_type=True),
                db=ctx.dbs["quarantine"])


def put_blob_txn(ctx: WriteContext, data: bytes) -> str:
    """Store ``data`` under its SHA-256 and return the hex digest."""
    digest = hashlib.sha256(data).digest()
    ctx.txn.put(digest, data, db=ctx.dbs["blobs"], overwrite=False)
    return digest.hex()


def put_signers_txn(ctx: WriteContext, signers: list[tuple[bytes, bytes]]) -> None:
    """Store verified (public key, certificate chain) pairs."""
    for public_key, chain in signers:
        if len(public_key) != 32:
            raise StoreError("an Ed25519 public key is 32 bytes")
        ctx.txn.put(public_key, chain, db=ctx.dbs["signers"])


def trust_txn(ctx: WriteContext, public_key: bytes, label: str) -> None:
    """Record ``public_key`` as a signer whose deltas this node accepts."""
    if len(public_key) != 32:
        raise StoreError("an Ed25519 public key is 32 bytes")
    ctx.txn.put(layout.META_TRUST_PREFIX + public_key, label.encode(), db=ctx.dbs["meta"])


def clear_restored_txn(ctx: WriteContext) -> None:
    """Allow local writes again after a restored node caught up its own chains."""
    ctx.txn.delete(layout.META_RESTORED, db=ctx.dbs["meta"])
    ctx.shared.restored = False


def reindex_txn(ctx: WriteContext) -> int:
    """Rebuild every secondary index from the views; return entries written."""
    txn, dbs = ctx.txn, ctx.dbs
    txn.drop(dbs["idx"], delete=False)
    written = 0
    with txn.cursor(db=dbs["views"]) as cur:
        for kb, raw in cur:
            data = msgpack.unpackb(raw, raw=False)["data"]
            ctx.reindex(bytes(kb).decode(), None, data)
            written += 1
    return written
