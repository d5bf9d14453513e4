"""The node's LMDB store of signed CRDT records (DESIGN.md sections 4-6)."""

from node.store.delta import Delta
from node.store.results import ApplyResult, ApplyStatus, ChangeResult, FeedEvent
from node.store.store import Store, StoreOptions, View

__all__ = [
    "ApplyResult", "ApplyStatus", "ChangeResult", "Delta", "FeedEvent", "Store",
    "StoreOptions", "View",
]
