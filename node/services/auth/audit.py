"""The audit log, read from the signed delta log: who changed which record, where, when.

Every entry is a stored delta, so it is provable by anyone holding the
authority's certificate. Newest first; filters by record key prefix, acting
user, node and time; centre staff see only their centre's scope.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from node.identity import node_id_of
from node.services.auth.permissions import Principal, Reach, check
from node.store import Store
from node.store.hlc import hlc_millis

MAX_SCAN = 200_000


class AuditQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")
    key: str | None = Field(None, max_length=256, description="Record key or key prefix.")
    user: str | None = Field(None, max_length=64, description="Acting user.")
    node: str | None = Field(None, max_length=40, description="Node id that made the change.")
    scope: str | None = Field(None, max_length=64, description="Scope (centre or global).")
    since: float | None = Field(None, description="Unix time, inclusive.")
    until: float | None = Field(None, description="Unix time, exclusive.")


def audit(store: Store, actor: Principal, q: AuditQuery) -> list[dict[str, Any]]:
    """Return audit entries in reach, newest first."""
    reach = check(actor, "audit.list")
    node_ids: dict[bytes, str] = {}
    out: list[dict[str, Any]] = []
    head = store.feed_head()
    start = max(0, head - MAX_SCAN)
    events = []
    cursor = start
    while True:
        batch = store.feed_since(cursor, 5000)
        if not batch:
            break
        events.extend(batch)
        cursor = batch[-1].feed_no
    for ev in reversed(events):
        if reach is Reach.CENTER and ev.scope != actor.center:
            continue
        if q.scope and ev.scope != q.scope:
            continue
        if q.key and not ev.key.startswith(q.key):
            continue
        at = hlc_millis(ev.hlc) / 1000
        if (q.since is not None and at < q.since) or (q.until is not None and at >= q.until):
            continue
        node = node_ids.setdefault(ev.origin, node_id_of(ev.origin))
        if q.node and node != q.node:
            continue
        delta = next(store.deltas(ev.origin, ev.scope, ev.seq - 1, 1), None)
        user = delta.user if delta is not None else ""
        if q.user is not None and user != q.user:
            continue
        out.append({"time": at, "key": ev.key, "scope": ev.scope, "node": node,
                    "user": user, "seq": ev.seq, "bytes": len(delta.update) if delta else 0})
    return out
