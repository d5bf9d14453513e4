"""One node process for ``bench/replication.py``, driven by JSON lines on stdin.

Run as ``python bench/_labnode.py --data DIR`` with ``PYTHONPATH`` at the
repository root. It serves the node in ``DIR`` exactly as ``examnode run``
does (``open_context`` + ``RunningNode``) and prints one JSON object per line
on stdout; logs go to stderr. Times are ``time.monotonic()`` (CLOCK_MONOTONIC,
one clock for every process on the machine), so the benchmark can subtract a
time taken in one node process from a time taken in another.

Events (no ``id``)::

    {"event": "ready", "node_id", "pk", "port", "t_start", "t_ready"}
    {"event": "caughtup", "t_start", "t_ready", "t_up", "t_done", "head0", "head", "writer"}
        (only with --watch: the watched chain reached its target; ``writer``: the writer
        thread's wall and CPU seconds inside batches, batches, items, process CPU so far)

Commands ``{"id": N, "cmd": NAME, ...}`` are answered by ``{"id": N, "ok": true, ...}``
(or ``"ok": false, "error"``):

    vv                      {"vv": {"<pk hex>/<scope>": seq}}
    frames                  chain messages sent per peer session {"<node id>": n}
    prime keys              create records bench/0 .. bench/<keys-1> (concurrently)
    paced rate seconds keys puts at a steady rate; per put: seq, issue and commit time
    burst n concurrency keys
                            n puts from ``concurrency`` workers as fast as they go
    record origin scope     start recording when deltas of that chain appear in the feed
                            (and time each ``Store.apply_chain`` call of that chain)
    arrivals                stop recording; return [seq, time] of every one seen and
                            [first seq, last seq, call time, return time] of every apply
    quit                    stop cleanly (as SIGTERM and stdin closing do)

With ``--cprofile FILE`` the event-loop thread and the store's writer thread
are profiled (cProfile) for the life of the process and the stats are written
to ``FILE.loop`` and ``FILE.writer`` when it stops.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import logging
import signal
import sys
import time
from pathlib import Path
from typing import Any

from bench._common import pct
from node.runtime import RunningNode, open_context
from node.services.system import NodeContext

log = logging.getLogger("bench.labnode")
COLLECTION = "bench"


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def fields(n: int, tick: int) -> dict[str, Any]:
    """Five small fields (about 140 bytes packed); ``last_seen`` differs on every call."""
    return {
        "name": f"Candidate {n:06d} Okonkwo-Lindqvist",
        "exam": "MATH-2026-P1-HIGHER",
        "seat": f"H{n % 40:02d}-{n % 17:02d}",
        "status": "writing",
        "last_seen": f"2026-06-09T09:{tick // 60 % 60:02d}:{tick % 60:02d}.{tick % 1000:03d}Z"
                     f"#{tick:09d}",
    }


class Harness:
    def __init__(self, ctx: NodeContext, stop: asyncio.Event) -> None:
        self.ctx = ctx
        self.stop = stop
        self.tick = 0
        self.tasks: set[asyncio.Task[Any]] = set()
        self.recorder: asyncio.Task[None] | None = None
        self.arrivals: list[tuple[int, float]] = []
        self.applies: list[tuple[int, int, float, float]] = []

    def spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def _put(self, key_no: int) -> Any:
        self.tick += 1
        return await self.ctx.store.put(f"{COLLECTION}/{key_no}", fields(key_no, self.tick),
                                        scope=self.ctx.center)

    # --- commands ---------------------------------------------------------------------------

    async def cmd_vv(self) -> dict[str, Any]:
        return {"vv": {f"{o.hex()}/{s}": n for (o, s), n in self.ctx.store.version_vector()
                       .items()}}

    async def cmd_frames(self) -> dict[str, Any]:
        rep = self.ctx.replicator
        return {"frames": {pid: s._batch_no for pid, s in rep.sessions.items()} if rep else {}}

    async def cmd_prime(self, keys: int) -> dict[str, Any]:
        results = await asyncio.gather(*(self._put(k) for k in range(keys)))
        return {"written": len(results)}

    async def cmd_paced(self, rate: float, seconds: float, keys: int) -> dict[str, Any]:
        """Issue ``rate`` puts a second for ``seconds``; each put is its own task."""
        n = int(rate * seconds)
        seq: list[int] = [0] * n
        issued_at: list[float] = [0.0] * n
        committed: list[float] = [0.0] * n
        pending: list[asyncio.Task[None]] = []

        async def one(i: int) -> None:
            issued_at[i] = time.monotonic()
            result = await self._put(i % keys)
            committed[i] = time.monotonic()
            seq[i] = result.seq or 0

        loop = asyncio.get_running_loop()
        t0 = time.monotonic() + 0.02
        i = 0
        while i < n:
            due = min(n, int((time.monotonic() - t0) * rate) + 1)
            while i < due:
                pending.append(loop.create_task(one(i)))
                i += 1
            await asyncio.sleep(max(0.0, t0 + i / rate - time.monotonic()))
        await asyncio.gather(*pending)
        return {"t0": t0, "seq": seq, "issued": issued_at, "committed": committed}

    async def cmd_burst(self, n: int, concurrency: int, keys: int) -> dict[str, Any]:
        lat: list[float] = []
        heads: list[int] = []

        async def worker(w: int) -> None:
            for i in range(w, n, concurrency):
                t = time.perf_counter()
                result = await self._put(i % keys)
                lat.append(time.perf_counter() - t)
                heads.append(result.seq or 0)

        start = time.perf_counter()
        await asyncio.gather(*(worker(w) for w in range(concurrency)))
        elapsed = time.perf_counter() - start
        return {"written": len(lat), "elapsed": elapsed, "p50": pct(lat, 0.5),
                "p99": pct(lat, 0.99), "head": max(heads, default=0)}

    async def cmd_record(self, origin: str, scope: str) -> dict[str, Any]:
        want = bytes.fromhex(origin)
        self.arrivals = []
        self.applies = []
        store = self.ctx.store
        apply_chain = store.apply_chain

        async def timed(o: bytes, s: str, items: list[Any]) -> Any:
            """``Store.apply_chain`` as the session calls it, timed (seq range, call, done)."""
            t = time.monotonic()
            result = await apply_chain(o, s, items)
            if o == want and s == scope and items and isinstance(items[0], list):
                self.applies.append((items[0][0], items[-1][0], t, time.monotonic()))
            return result

        store.apply_chain = timed  # type: ignore[method-assign,assignment]

        async def record() -> None:
            async for ev in self.ctx.store.subscribe():
                if ev.origin == want and ev.scope == scope:
                    self.arrivals.append((ev.seq, time.monotonic()))

        self.recorder = self.spawn(record(), "bench-record")
        await asyncio.sleep(0.1)  # the feed subscription registers on the first iteration
        return {}

    async def cmd_arrivals(self) -> dict[str, Any]:
        if self.recorder is not None:
            self.recorder.cancel()
            await asyncio.gather(self.recorder, return_exceptions=True)
            self.recorder = None
        self.ctx.store.__dict__.pop("apply_chain", None)  # the class's method again
        out, self.arrivals = self.arrivals, []
        applies, self.applies = self.applies, []
        return {"arrivals": out, "applies": applies}

    async def cmd_quit(self) -> dict[str, Any]:
        self.stop.set()
        return {}

    async def handle(self, line: str) -> None:
        try:
            msg = json.loads(line)
            mid, name = msg.pop("id"), msg.pop("cmd")
        except (ValueError, KeyError):
            emit({"ok": False, "error": f"bad command line {line[:80]!r}"})
            return
        try:
            fn = getattr(self, f"cmd_{name}")
            reply = await fn(**msg)
            emit({"id": mid, "ok": True, **reply})
        except Exception as e:
            log.exception("command %s failed", name)
            emit({"id": mid, "ok": False, "error": f"{type(e).__name__}: {e}"})


async def read_commands(h: Harness) -> None:
    """Run stdin commands (each as a task, so slow ones do not block); EOF stops the node."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 24)
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    try:
        while line := await reader.readline():
            if line.strip():
                h.spawn(h.handle(line.decode()), "bench-cmd")
    finally:
        transport.close()
        h.stop.set()


async def watch_chain(ctx: NodeContext, spec: str, peer: str, t_start: float,
                      ready: dict[str, float], meter: WriterMeter) -> None:
    """Emit ``caughtup`` once chain ``origin/scope`` holds ``target`` (polled every 5 ms)."""
    origin_hex, scope, target_s = spec.split(":")
    chain, target = (bytes.fromhex(origin_hex), scope), int(target_s)
    head0: int | None = None
    t_up: float | None = None
    offset = time.time() - time.monotonic()
    while True:
        await asyncio.sleep(0.005)
        rep = ctx.replicator
        if t_up is None and rep is not None:
            session = rep.sessions.get(peer)
            if session is not None and session.state.connected_at:
                t_up = session.state.connected_at - offset
        try:
            head = ctx.store.version_vector().get(chain, 0)
        except Exception:  # the store is not open yet
            continue
        if head0 is None:
            head0 = head
        if head >= target:
            emit({"event": "caughtup", "t_start": t_start, "t_ready": ready.get("t", 0.0),
                  "t_up": t_up, "t_done": time.monotonic(), "head0": head0, "head": head,
                  "writer": meter.snapshot()})
            return


class WriterMeter:
    """Wall and CPU time of the store's writer thread inside its batches."""

    def __init__(self) -> None:
        self.wall = 0.0
        self.cpu = 0.0
        self.batches = 0
        self.items = 0

    def install(self, ctx: NodeContext) -> None:
        store = ctx.store
        orig_open = store.open

        def open_and_wrap() -> None:
            orig_open()
            writer = store.writer
            run_batch = writer._run_batch

            def timed(batch: list[Any]) -> None:
                w, c = time.perf_counter(), time.thread_time()
                try:
                    run_batch(batch)
                finally:
                    self.wall += time.perf_counter() - w
                    self.cpu += time.thread_time() - c
                    self.batches += 1
                    self.items += len(batch)

            writer._run_batch = timed  # type: ignore[method-assign]

        store.open = open_and_wrap  # type: ignore[method-assign]

    def snapshot(self) -> dict[str, float]:
        return {"wall": self.wall, "cpu": self.cpu, "batches": self.batches,
                "items": self.items, "proc_cpu": time.process_time()}


def install_profiles(ctx: NodeContext) -> tuple[cProfile.Profile, cProfile.Profile]:
    """Profile this (event-loop) thread now and the writer thread's batches once open."""
    loop_prof, writer_prof = cProfile.Profile(), cProfile.Profile()
    store = ctx.store
    orig_open = store.open

    def open_and_wrap() -> None:
        orig_open()
        writer = store.writer
        run_batch = writer._run_batch

        def profiled(batch: list[Any]) -> None:
            writer_prof.enable()
            try:
                run_batch(batch)
            finally:
                writer_prof.disable()

        writer._run_batch = profiled  # type: ignore[method-assign]

    store.open = open_and_wrap  # type: ignore[method-assign]
    loop_prof.enable()
    return loop_prof, writer_prof


async def main(args: argparse.Namespace) -> None:
    t_start = time.monotonic()
    ctx = open_context(args.data)
    logging.getLogger().setLevel(ctx.config.log.level)
    meter = WriterMeter()
    meter.install(ctx)
    profiles = install_profiles(ctx) if args.cprofile else None
    node = RunningNode(ctx)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    h = Harness(ctx, stop)
    ready: dict[str, float] = {}
    if args.watch:
        h.spawn(watch_chain(ctx, args.watch, args.watch_peer, t_start, ready, meter),
                "bench-watch")
    await node.start()
    ready["t"] = time.monotonic()
    assert ctx.replicator is not None
    emit({"event": "ready", "node_id": ctx.node_id, "pk": ctx.identity.public_key.hex(),
          "port": ctx.replicator.port, "t_start": t_start, "t_ready": ready["t"]})
    reading = asyncio.create_task(read_commands(h), name="bench-stdin")
    try:
        await stop.wait()
    finally:
        reading.cancel()
        for task in list(h.tasks):
            task.cancel()
        await asyncio.gather(reading, *h.tasks, return_exceptions=True)
        await node.stop()
        if profiles is not None:
            profiles[0].disable()
            profiles[0].dump_stats(f"{args.cprofile}.loop")
            profiles[1].dump_stats(f"{args.cprofile}.writer")
        emit({"event": "stopped"})


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--watch", metavar="ORIGIN_HEX:SCOPE:TARGET",
                        help="report when this chain reaches TARGET")
    parser.add_argument("--watch-peer", default="", metavar="NODE_ID",
                        help="the peer whose session start is reported with --watch")
    parser.add_argument("--cprofile", metavar="FILE", help="profile the loop and writer threads")
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(main(parser.parse_args()))
