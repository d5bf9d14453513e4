"""The change feed: live subscribers to what the store commits.

Replication and live pages subscribe here. Each subscriber has a bounded
queue; one that falls behind is not allowed to grow without limit: it is
told it lagged and resumes from the feed stored in LMDB (``feed_since``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from node.store.results import FeedEvent

if TYPE_CHECKING:
    from node.store.store import Store

log = logging.getLogger(__name__)


class _Subscriber:
    def __init__(self, loop: asyncio.AbstractEventLoop, maxsize: int) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[list[FeedEvent] | None] = asyncio.Queue()
        self.maxsize = maxsize
        self.pending = 0
        self.lagged = False


class Feed:
    """Fan-out of committed feed events to asyncio subscribers."""

    def __init__(self) -> None:
        self._subs: set[_Subscriber] = set()
        self._closed = False

    def reopen(self) -> None:
        """Accept subscribers again after ``close`` (the store was reopened)."""
        self._closed = False

    def publish(self, events: list[FeedEvent]) -> None:
        """Hand a committed batch's events to every subscriber (any thread)."""
        for sub in list(self._subs):
            try:
                sub.loop.call_soon_threadsafe(self._deliver, sub, events)
            except RuntimeError:
                self._subs.discard(sub)

    @staticmethod
    def _deliver(sub: _Subscriber, events: list[FeedEvent]) -> None:
        if sub.lagged:
            return
        if sub.pending + len(events) > sub.maxsize:
            sub.lagged = True  # the reader catches up from LMDB instead
            sub.queue.put_nowait([])
            return
        sub.pending += len(events)
        sub.queue.put_nowait(events)

    def close(self) -> None:
        """End every subscription."""
        self._closed = True
        for sub in list(self._subs):
            try:
                sub.loop.call_soon_threadsafe(sub.queue.put_nowait, None)
            except RuntimeError:
                pass
        self._subs.clear()

    def subscribe(self, store: Store, maxsize: int) -> AsyncIterator[FeedEvent]:
        """Return an iterator of every event committed from now on, in order, without loss.

        The subscription starts when this is called (not at the first ``anext``), so
        nothing committed in between is missed. A subscriber that cannot keep up is
        switched to reading the stored feed and then back to live events.
        """
        sub = _Subscriber(asyncio.get_running_loop(), maxsize)
        self._subs.add(sub)
        return self._events(store, sub, store.feed_head())

    async def _events(self, store: Store, sub: _Subscriber,
                      last: int) -> AsyncIterator[FeedEvent]:
        try:
            while not self._closed:
                batch = await sub.queue.get()
                if batch is None:
                    return
                sub.pending -= len(batch)
                if sub.lagged:
                    sub.lagged = False
                    while True:
                        # Drain what is queued, then replay from disk past the last seen.
                        while not sub.queue.empty():
                            item = sub.queue.get_nowait()
                            if item is None:
                                return
                        sub.pending = 0
                        stored = store.feed_since(last, 1000)
                        if not stored:
                            break
                        for ev in stored:
                            last = ev.feed_no
                            yield ev
                    continue
                for ev in batch:
                    if ev.feed_no > last:
                        last = ev.feed_no
                        yield ev
        finally:
            self._subs.discard(sub)
