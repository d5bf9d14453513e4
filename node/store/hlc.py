"""Hybrid logical clock (DESIGN.md section 8).

A timestamp is one 64-bit integer: wall-clock milliseconds in the high 48
bits and a logical counter in the low 16. It never goes backwards on a node,
even when the wall clock does, and it moves past every timestamp received.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

LOGICAL_BITS = 16
LOGICAL_MASK = (1 << LOGICAL_BITS) - 1
MAX_HLC = (1 << 63) - 1


def hlc_millis(ts: int) -> int:
    """Return the wall-clock milliseconds part of a timestamp."""
    return ts >> LOGICAL_BITS


def hlc_from_millis(ms: int) -> int:
    """Return the smallest timestamp at wall-clock ``ms``."""
    return ms << LOGICAL_BITS


class HybridClock:
    """A thread-safe hybrid logical clock."""

    def __init__(self, last: int = 0, wall: Callable[[], float] = time.time) -> None:
        self._last = last
        self._wall = wall
        self._lock = threading.Lock()

    @property
    def last(self) -> int:
        return self._last

    def now(self) -> int:
        """Return a new timestamp greater than every one seen before."""
        with self._lock:
            physical = hlc_from_millis(int(self._wall() * 1000))
            self._last = max(physical, self._last + 1)
            return self._last

    def observe(self, remote: int) -> None:
        """Move past a timestamp received from another node."""
        if not 0 <= remote <= MAX_HLC:
            return
        with self._lock:
            self._last = max(self._last, remote)
