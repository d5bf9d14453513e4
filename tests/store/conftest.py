"""Fixtures for the store tests: real LMDB stores in ``tmp_path``, always closed."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from node.identity import Identity
from node.store import Store, StoreOptions
from node.store.context import IndexFn

OpenStore = Callable[..., Store]

# Small map: the tests never come near it, and a sparse 8 GiB file per store
# is pointless when a test opens dozens of them.
TEST_OPTIONS = StoreOptions(map_size=64 * 1024**2)


@pytest.fixture
def open_store(tmp_path: Path) -> Iterator[OpenStore]:
    """Return a function that opens a store under ``tmp_path``; all are closed at teardown."""
    opened: list[Store] = []

    def _open(
        name: str = "node",
        identity: Identity | None = None,
        options: StoreOptions | None = None,
        indexes: dict[tuple[str, str], IndexFn] | None = None,
    ) -> Store:
        s = Store(tmp_path / name, identity or Identity.generate(), options or TEST_OPTIONS)
        for (collection, index), fn in (indexes or {}).items():
            s.declare_index(collection, index, fn)
        s.open()
        opened.append(s)
        return s

    yield _open
    for s in reversed(opened):
        s.close()


@pytest.fixture
def store(open_store: OpenStore) -> Store:
    """Return one open store (closed by ``open_store``)."""
    return open_store("a")
