"""Examnode: an offline-first examination node (store, API, replication)."""

__version__ = "0.1.0"
