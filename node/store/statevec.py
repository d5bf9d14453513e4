"""Telling whether pycrdt has fully integrated an update, or parks part of it.

pycrdt (yrs) integrates an update whose dependencies are missing only later,
and silently; the parked part is neither in the document's state vector nor
in its encoded state (DESIGN.md section 4). An update is integrated when
merging it into the document's full state adds nothing: no item and no
deletion that the state does not already hold. This is exact where state
vectors are not (they miss a writer's later items and every delete set).
"""

from __future__ import annotations

import pycrdt


def covers(state: bytes, update: bytes) -> bool:
    """Return True when the encoded document ``state`` already holds all of ``update``."""
    return bytes(pycrdt.merge_updates(state, update)) == bytes(pycrdt.merge_updates(state))
