"""Live CRDT documents of the writer thread, and their materialized views.

Only the writer thread touches a ``Doc`` (DESIGN.md section 6): requests read
the plain-dict views that ``materialize`` produces. ``DocCache`` keeps hot
records as live documents, bounded, least recently used first out.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import msgpack
from pycrdt import Array, Doc, Map, Text

from node.store.statevec import covers

ROOT = "root"
DELETED = "_deleted"


def fresh_client_id() -> int:
    """Return a random CRDT client id (53 bits, safe for every Yjs peer)."""
    return secrets.randbits(52) | (1 << 52)


def normalize(value: Any) -> Any:
    """Turn a pycrdt value into plain JSON-able Python.

    Yjs stores numbers as doubles; whole numbers come back as ints so that a
    view reads as it was written.
    """
    if isinstance(value, Map):
        value = value.to_py()
    elif isinstance(value, Array | Text):
        value = value.to_py()
    if isinstance(value, dict):
        return {k: normalize(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [normalize(v) for v in value]
    if isinstance(value, float) and value.is_integer() and abs(value) <= 2**53:
        return int(value)
    return value


@dataclass
class LiveRecord:
    """One record as a live document, plus the updates it still parks."""

    scope: str
    doc: Doc[Any]
    root: Map[Any]
    parked: list[bytes] = field(default_factory=list)
    _view: dict[str, Any] | None = None  # cached plain view; None once the doc changed
    stored: bool = True  # False for a record created in memory and not yet written
    # Index values last written for this record, so a change need not read the old view.
    indexed: dict[tuple[str, str], set[str]] | None = None

    def state(self) -> bytes:
        """Return the encoded record for the ``records`` database."""
        out: bytes = msgpack.packb([self.scope, self.doc.get_update(), self.parked],
                                   use_bin_type=True)
        return out

    def view(self) -> dict[str, Any]:
        """Return the record as a plain dict (cached until the document changes)."""
        if self._view is None:
            # One read transaction for the whole map: far cheaper than one per key.
            with self.doc.transaction():
                out = normalize(self.root.to_py())
            self._view = out if isinstance(out, dict) else {}
        return dict(self._view)

    def changed(self) -> None:
        """Forget the cached view after the document changed."""
        self._view = None

    def set_view(self, view: dict[str, Any]) -> None:
        """Cache the view of a change whose result is known (``put`` of plain fields)."""
        self._view = view

    def apply(self, update: bytes) -> None:
        """Apply a remote update and recompute which updates remain parked."""
        self._view = None
        self.doc.apply_update(update)
        # Re-declare the root after applying updates (pycrdt pitfall, DESIGN.md s4).
        self.root = self.doc.get(ROOT, type=Map)
        state = self.doc.get_update()
        waiting = [*self.parked, update]
        self.parked = [u for u in waiting if not covers(state, u)]


def load_record(raw: bytes, client_id: int) -> LiveRecord:
    """Rebuild a live record from its ``records`` database value."""
    scope, state, parked = msgpack.unpackb(raw, raw=False)
    doc: Doc[Any] = Doc(client_id=client_id)
    doc.apply_update(state)
    for update in parked:
        doc.apply_update(update)
    rec = LiveRecord(scope, doc, doc.get(ROOT, type=Map), [])
    current = doc.get_update()
    rec.parked = [u for u in parked if not covers(current, u)]
    return rec


def new_record(scope: str, client_id: int) -> LiveRecord:
    """Return an empty live record in ``scope``."""
    doc: Doc[Any] = Doc(client_id=client_id)
    return LiveRecord(scope, doc, doc.get(ROOT, type=Map), stored=False)


class DocCache:
    """A bounded LRU of live records, owned by the writer thread."""

    def __init__(self, capacity: int) -> None:
        self.capacity = max(1, capacity)
        self._items: OrderedDict[str, LiveRecord] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: str) -> LiveRecord | None:
        rec = self._items.get(key)
        if rec is not None:
            self._items.move_to_end(key)
        return rec

    def put(self, key: str, rec: LiveRecord) -> None:
        self._items[key] = rec
        self._items.move_to_end(key)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def drop(self, key: str) -> None:
        self._items.pop(key, None)

    def clear(self) -> None:
        self._items.clear()
