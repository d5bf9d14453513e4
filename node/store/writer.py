"""The single writer thread with group commit (DESIGN.md section 6).

Every write is a named synchronous ``*_txn`` function (see ``txns.py``) queued
here. The thread takes everything queued, runs each function in its own
nested LMDB transaction (a failing one leaves no trace), commits the batch
once, durably, and only then answers each caller: one fsync for many writes.
The event loop only awaits a future; it never runs an LMDB write.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import lmdb

from node.errors import StoreClosed

log = logging.getLogger(__name__)

TxnFn = Callable[..., Any]


@dataclass(slots=True)
class _Item:
    fn: TxnFn
    args: tuple[Any, ...]
    waiter: asyncio.Future[Any] | concurrent.futures.Future[Any]
    loop: asyncio.AbstractEventLoop | None


_STOP = object()


class Writer:
    """Runs txn functions in batches on one thread; see the module docstring."""

    def __init__(
        self,
        env: lmdb.Environment,
        make_context: Callable[[lmdb.Transaction], Any],
        finish_batch: Callable[[Any, bool], None],
        *,
        max_batch: int = 1000,
        name: str = "examnode-writer",
    ) -> None:
        self._env = env
        self._make_context = make_context
        self._finish_batch = finish_batch
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[_Item | object] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._closed = False
        self.batches = 0
        self.items = 0

    def start(self) -> None:
        """Start the writer thread."""
        self._thread.start()

    def stop(self) -> None:
        """Finish everything queued so far, then stop the thread."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._thread.join()

    def submit(self, fn: TxnFn, *args: Any) -> asyncio.Future[Any]:
        """Queue ``fn(ctx, *args)``; the future resolves once its batch is durable."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._put(_Item(fn, args, fut, loop))
        return fut

    def call(self, fn: TxnFn, *args: Any) -> Any:
        """Run ``fn(ctx, *args)`` from a plain thread and wait until it is durable."""
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._put(_Item(fn, args, fut, None))
        return fut.result()

    def _put(self, item: _Item) -> None:
        if self._closed:
            raise StoreClosed("the store is closed")
        self._queue.put(item)

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            batch: list[_Item] = []
            if first is _STOP:
                break
            batch.append(first)  # type: ignore[arg-type]
            while len(batch) < self._max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stopping = True
                    break
                batch.append(nxt)  # type: ignore[arg-type]
            self._run_batch(batch)

    def _run_batch(self, batch: list[_Item]) -> None:
        results: list[tuple[_Item, bool, Any]] = []
        ctx: Any = None
        try:
            txn = self._env.begin(write=True)
            ctx = self._make_context(txn)
            for item in batch:
                child = self._env.begin(write=True, parent=txn)
                ctx.txn = child
                ctx.begin_item()
                try:
                    value = item.fn(ctx, *item.args)
                except BaseException as e:  # the caller gets it; the batch goes on
                    child.abort()
                    ctx.abort_item()
                    results.append((item, False, e))
                else:
                    child.commit()
                    ctx.commit_item()
                    results.append((item, True, value))
            ctx.txn = txn
            ctx.before_commit()
            txn.commit()
        except BaseException as e:
            log.exception("write batch of %d failed; nothing of it was stored", len(batch))
            if ctx is not None:
                self._finish_batch(ctx, False)
            self._resolve([(item, False, e) for item in batch])
            return
        self.batches += 1
        self.items += len(batch)
        self._finish_batch(ctx, True)
        self._resolve(results)

    @staticmethod
    def _resolve(results: list[tuple[_Item, bool, Any]]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Item, bool, Any]]] = defaultdict(list)
        for item, ok, value in results:
            if item.loop is None:
                fut = item.waiter
                assert isinstance(fut, concurrent.futures.Future)
                if ok:
                    fut.set_result(value)
                else:
                    fut.set_exception(value)
            else:
                by_loop[item.loop].append((item, ok, value))
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(_settle, items)
            except RuntimeError:  # the loop closed while we wrote; nobody is waiting
                log.debug("event loop closed before %d results were delivered", len(items))


def _settle(items: list[tuple[_Item, bool, Any]]) -> None:
    for item, ok, value in items:
        fut = item.waiter
        assert isinstance(fut, asyncio.Future)
        if fut.cancelled():
            continue
        if ok:
            fut.set_result(value)
        else:
            fut.set_exception(value)
