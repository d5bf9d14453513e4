"""Benchmark of the LMDB store (DESIGN.md section 6); not a test.

Measures, in one run:

* durable signed record changes per second, and p50/p99 latency of
  ``await store.put(...)``, with 1, 50 and 500 concurrent writers (asyncio
  tasks in one event loop, each changing its own record ``candidates/<n>``);
* the floor, measured in the same run: raw py-lmdb, ``sync=True``, one durable
  write transaction per put of a value as large as one stored delta envelope;
* the ratio of the two and whether the goals are met (500 writers: at least
  2.5x the floor's writes/s, p99 at most 20 ms);
* process RSS and LMDB file size after writing 100,000 records to a fresh store
  (in a child process, so earlier rounds do not inflate it).

Every measurement is repeated (``--rounds``) and medians are printed, because
the machine is shared and noisy. ``--profile`` instead profiles the writer
thread at 500 writers and prints where its time goes per change.

Run: ``cd /work/main && PYTHONPATH=. .venv/bin/python bench/store.py [--quick]``
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import datetime
import gc
import itertools
import math
import multiprocessing
import os
import platform
import pstats
import shutil
import struct
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lmdb
import msgpack
import psutil

from bench._common import med, package_versions, pct
from node.identity import Identity
from node.store import Store, StoreOptions

SCOPE = "LAG014"
LEVELS = (1, 50, 500)
GOAL_RATIO = 2.5
GOAL_P99_MS = 20.0
GOAL_WRITERS = 500
SEQ = struct.Struct(">Q")


# --- configuration ----------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    rounds: int = 3
    seconds: float = 3.0  # per writer level and per floor run, at most
    max_writes: int = 60_000  # per writer level, at most
    warmup: float = 0.5  # seconds of unmeasured writes before each level
    records: int = 100_000  # RSS step
    rss_writers: int = 500
    levels: tuple[int, ...] = LEVELS


def make_config(args: argparse.Namespace) -> Config:
    if args.quick:
        cfg = Config(rounds=1, seconds=1.0, max_writes=10_000, warmup=0.2, records=5_000)
    else:
        cfg = Config()
    over: dict[str, Any] = {}
    if args.rounds is not None:
        over["rounds"] = args.rounds
    if args.seconds is not None:
        over["seconds"] = args.seconds
    if args.records is not None:
        over["records"] = args.records
    if over:
        cfg = Config(**{**cfg.__dict__, **over})
    return cfg


# --- helpers ------------------------------------------------------------------------------


_tick = itertools.count(1)


def candidate_fields(n: int) -> dict[str, Any]:
    """Five realistic fields (~150 bytes packed); ``last_seen`` differs every call."""
    t = next(_tick)
    return {
        "name": f"Candidate {n:06d} Okonkwo-Lindqvist",
        "exam": "MATH-2026-P1-HIGHER",
        "seat": f"H{n % 40:02d}-{n % 17:02d}",
        "status": "writing",
        "last_seen": f"2026-06-09T09:{t // 60 % 60:02d}:{t % 60:02d}.{t % 1000:03d}Z#{t:09d}",
    }


@contextmanager
def tmpdir(tag: str) -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix=f"examnode-bench-{tag}-"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def versions() -> dict[str, str]:
    return package_versions("lmdb", "pycrdt", "pynacl", "msgpack")


def proc_mem() -> dict[str, int]:
    """RSS of this process, split into anonymous (heap) and file-backed (mmap) if known."""
    out = {"rss": psutil.Process().memory_info().rss}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                name, _, rest = line.partition(":")
                if name in ("RssAnon", "RssFile", "RssShmem"):
                    out[name] = int(rest.split()[0]) * 1024
    except OSError:
        pass
    return out


def mib(n: float) -> str:
    return f"{n / 1024**2:,.1f} MiB"


# --- the floor: raw LMDB, one durable transaction per put -------------------------------


@dataclass
class Result:
    writes: int
    elapsed: float
    lat: list[float]
    batches: int = 0
    writer_wall: float = 0.0
    writer_cpu: float = 0.0

    @property
    def rate(self) -> float:
        return self.writes / self.elapsed if self.elapsed else math.nan

    @property
    def p50(self) -> float:
        return pct(self.lat, 0.50) * 1e3

    @property
    def p99(self) -> float:
        return pct(self.lat, 0.99) * 1e3


def run_floor(value_size: int, seconds: float, max_writes: int, warmup: float) -> Result:
    """One durable LMDB write transaction per put of a ``value_size`` value, fresh env."""
    with tmpdir("floor") as d:
        env = lmdb.open(str(d), map_size=2 * 1024**3, sync=True, metasync=True,
                        subdir=True, readahead=False)
        try:
            value = os.urandom(value_size)
            i = 0

            def one() -> float:
                nonlocal i
                i += 1
                t = time.perf_counter()
                with env.begin(write=True) as txn:
                    txn.put(SEQ.pack(i), value)
                return time.perf_counter() - t

            end = time.perf_counter() + warmup
            while time.perf_counter() < end:
                one()
            lat: list[float] = []
            start = time.perf_counter()
            end = start + seconds
            while len(lat) < max_writes and time.perf_counter() < end:
                lat.append(one())
            elapsed = time.perf_counter() - start
        finally:
            env.close()
    return Result(len(lat), elapsed, lat)


# --- the store --------------------------------------------------------------------------


class WriterMeter:
    """Counts the writer thread's batches and its wall/CPU time inside them."""

    def __init__(self, store: Store) -> None:
        writer = store.writer
        orig = writer._run_batch
        self.batches = 0
        self.wall = 0.0
        self.cpu = 0.0

        def run_batch(batch: list[Any]) -> None:
            w, c = time.perf_counter(), time.thread_time()
            try:
                orig(batch)
            finally:
                self.wall += time.perf_counter() - w
                self.cpu += time.thread_time() - c
                self.batches += 1

        writer._run_batch = run_batch  # type: ignore[method-assign]

    def snapshot(self) -> tuple[int, float, float]:
        return self.batches, self.wall, self.cpu


async def write_phase(store: Store, writers: int, seconds: float, max_writes: int,
                      first_key: int = 0) -> Result:
    """``writers`` tasks, each changing its own record until time or count runs out."""
    per_writer = max(1, math.ceil(max_writes / writers))
    lat: list[float] = []
    start = time.perf_counter()
    end = start + seconds

    async def writer(w: int) -> None:
        key = f"candidates/{first_key + w}"
        n = 0
        while True:
            fields = candidate_fields(first_key + w)
            t = time.perf_counter()
            result = await store.put(key, fields, scope=SCOPE)
            lat.append(time.perf_counter() - t)
            if not result.changed:
                raise AssertionError(f"{key}: write was not a change")
            n += 1
            if n >= per_writer or time.perf_counter() >= end:
                return

    await asyncio.gather(*(writer(w) for w in range(writers)))
    return Result(len(lat), time.perf_counter() - start, lat)


async def run_level(store: Store, meter: WriterMeter, writers: int, cfg: Config) -> Result:
    await write_phase(store, writers, cfg.warmup, cfg.max_writes)
    gc.collect()
    b0, w0, c0 = meter.snapshot()
    res = await write_phase(store, writers, cfg.seconds, cfg.max_writes)
    b1, w1, c1 = meter.snapshot()
    res.batches, res.writer_wall, res.writer_cpu = b1 - b0, w1 - w0, c1 - c0
    return res


def envelope_sizes(store: Store, created: int) -> tuple[int, int]:
    """Return (median update-delta envelope, median creation-delta envelope) sizes.

    The first ``created`` deltas of the chain created records; the rest changed one field.
    """
    pk = store.identity.public_key
    sizes = [len(raw) for raw in store.raw_deltas(pk, SCOPE)]
    assert len(sizes) == store.version_vector()[(pk, SCOPE)]
    creates = sizes[:created]
    updates = sizes[created:] or sizes
    return int(med(updates)), int(med(creates))


async def prime(store: Store, writers: int) -> None:
    """Create records candidates/0..writers-1 and change each once."""
    for _ in range(2):
        await asyncio.gather(*(store.put(f"candidates/{w}", candidate_fields(w), scope=SCOPE)
                               for w in range(writers)))


@dataclass
class Round:
    envelope: int
    create_envelope: int
    floor: Result
    levels: dict[int, Result] = field(default_factory=dict)


async def store_round(cfg: Config, say: Callable[[str], None]) -> Round:
    with tmpdir("store") as d:
        store = Store(d, Identity.generate(), StoreOptions())
        store.open()
        try:
            meter = WriterMeter(store)
            await prime(store, max(cfg.levels))
            env_size, create_size = envelope_sizes(store, max(cfg.levels))
            floor = run_floor(env_size, cfg.seconds, cfg.max_writes, cfg.warmup)
            rnd = Round(env_size, create_size, floor)
            say(f"  floor     {floor.rate:9,.0f} writes/s  p50 {floor.p50:6.2f} ms  "
                f"p99 {floor.p99:6.2f} ms  ({floor.writes:,} puts of {env_size} B)")
            for n in cfg.levels:
                res = await run_level(store, meter, n, cfg)
                rnd.levels[n] = res
                say(f"  {n:3d} wr    {res.rate:9,.0f} writes/s  p50 {res.p50:6.2f} ms  "
                    f"p99 {res.p99:6.2f} ms  ({res.writes:,} writes, "
                    f"{res.writes / max(1, res.batches):.1f}/batch, "
                    f"x{res.rate / floor.rate:.2f} floor)")
        finally:
            store.close()
    return rnd


# --- RSS after N records (child process) ------------------------------------------------


async def _fill(records: int, writers: int) -> dict[str, Any]:
    with tmpdir("rss") as d:
        store = Store(d, Identity.generate(), StoreOptions())
        store.open()
        try:
            await store.put("candidates/x", candidate_fields(0), scope=SCOPE)
            gc.collect()
            before = proc_mem()
            start = time.perf_counter()

            async def writer(w: int) -> None:
                for k in range(w, records, writers):
                    await store.put(f"candidates/{k}", candidate_fields(k), scope=SCOPE)

            await asyncio.gather(*(writer(w) for w in range(writers)))
            elapsed = time.perf_counter() - start
            after = proc_mem()
            stats = store.stats()
            cached = len(store._shared.cache) if store._shared else 0
        finally:
            store.close()
        gc.collect()
        closed = proc_mem()
    return {"records": records, "elapsed": elapsed, "before": before, "after": after,
            "closed": closed, "file_bytes": stats["file_bytes"],
            "used_bytes": stats["used_bytes"], "entries": stats["records_entries"],
            "cached_docs": cached}


def _rss_child(records: int, writers: int, conn: Any) -> None:
    try:
        conn.send(asyncio.run(_fill(records, writers)))
    except BaseException as e:
        conn.send({"error": repr(e)})
    finally:
        conn.close()


def rss_step(records: int, writers: int) -> dict[str, Any]:
    """Fill a fresh store in a fresh process; return its memory and file figures."""
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_rss_child, args=(records, writers, child))
    proc.start()
    child.close()
    try:
        out: dict[str, Any] = parent.recv()
    except EOFError:
        out = {"error": "child process died"}
    proc.join()
    return out


# --- profile of the writer thread ------------------------------------------------------


PROFILE_ROWS: tuple[tuple[str, str, str], ...] = (
    # (label, file substring, function name): cumulative time of that function
    ("whole batch (Writer._run_batch)", "writer.py", "_run_batch"),
    ("  env.begin (nested txn per item + 1 outer)", "~",
     "<method 'begin' of 'Environment' objects>"),
    ("  txn.commit (nested per item + 1 durable)", "~",
     "<method 'commit' of 'Transaction' objects>"),
    ("  change_txn", "txns.py", "change_txn"),
    ("    check_key (regex)", "delta.py", "check_key"),
    ("    ctx.load (DocCache hit)", "context.py", "load"),
    ("    mutate (put's closure: 5 Map.get, 1 set)", "store.py", "mutate"),
    ("    Doc.get_state (before/after)", "_doc.py", "get_state"),
    ("    Doc.get_update (delta + full state)", "_doc.py", "get_update"),
    ("    ctx.head (vv get + unpack)", "context.py", "head"),
    ("    HybridClock.now", "hlc.py", "now"),
    ("    make_delta", "delta.py", "make_delta"),
    ("      Identity.sign (Ed25519)", "identity.py", "sign"),
    ("    ctx.append", "context.py", "append"),
    ("      encode (envelope)", "delta.py", "encode"),
    ("      Delta.hash (repack + sha256)", "delta.py", "hash"),
    ("      LiveRecord.state (full doc update)", "records.py", "state"),
    ("      _write_view (old view + view + pack)", "context.py", "_write_view"),
    ("    LiveRecord.view (all calls)", "records.py", "view"),
    ("  pycrdt Doc.transaction enter+exit (all)", "_transaction.py", "__exit__"),
    ("  msgpack packb (all)", "msgpack", "packb"),
    ("  lmdb put (all)", "~", "<method 'put' of 'Transaction' objects>"),
    ("  lmdb get (all)", "~", "<method 'get' of 'Transaction' objects>"),
    ("  Writer._resolve (call_soon_threadsafe)", "writer.py", "_resolve"),
)


def micro_timings(say: Callable[[str], None]) -> None:
    """Time the pieces of one change in isolation, without a profiler."""
    import timeit

    from node.store.context import pack_view
    from node.store.delta import encode, make_delta
    from node.store.records import new_record, normalize

    rec = new_record(SCOPE, (1 << 52) | 7)
    for _ in range(20):  # a record with some history, as in the benchmark
        f = candidate_fields(7)
        with rec.doc.transaction(origin="local"):
            for k, v in f.items():
                if rec.root.get(k) != v:
                    rec.root[k] = v
    ident = Identity.generate()
    msg = os.urandom(180)
    view = rec.view()
    packed_view = pack_view(SCOPE, 1, "", view)
    delta = make_delta(ident, scope=SCOPE, seq=9, prev=bytes(32), key="candidates/7",
                       update=os.urandom(60), user="", hlc=1)

    def put_mutate() -> None:
        f = candidate_fields(7)
        with rec.doc.transaction(origin="local"):
            for k, v in f.items():
                if rec.root.get(k) != v:
                    rec.root[k] = v

    plain = dict(view)

    def diff_mutate() -> None:
        f = candidate_fields(7)
        with rec.doc.transaction(origin="local"):
            for k, v in f.items():
                if plain.get(k) != v:
                    rec.root[k] = v
                    plain[k] = v

    def view_one_txn() -> Any:
        with rec.doc.transaction():
            return normalize(rec.root.to_py())

    import json

    def view_json() -> Any:
        return normalize(json.loads(str(rec.root)))

    def nested_txn_cost() -> None:
        with tmpdir("micro") as d:
            env = lmdb.open(str(d), map_size=256 * 1024**2, sync=False)
            try:
                n = 20_000
                txn = env.begin(write=True)
                t = time.perf_counter()
                for _ in range(n):
                    env.begin(write=True, parent=txn).commit()
                el = time.perf_counter() - t
                txn.abort()
            finally:
                env.close()
        say(f"    {'empty nested LMDB txn begin+commit':52s} {el / n * 1e6:7.1f} us")

    rows: list[tuple[str, Callable[[], Any]]] = [
        ("LiveRecord.view() (called 2x per change)", rec.view),
        ("  same, inside one doc.transaction()", view_one_txn),
        ("  same, normalize(json.loads(str(root)))", view_json),
        ("put() mutate: 5 Map.get + 1 set, in a txn", put_mutate),
        ("  same, diffed against a cached plain view", diff_mutate),
        ("Doc.get_state()", rec.doc.get_state),
        ("LiveRecord.state() (full doc encode)", rec.state),
        ("Identity.sign (Ed25519, 180 B)", lambda: ident.sign(msg)),
        ("make_delta (signing_bytes + sign)", lambda: make_delta(
            ident, scope=SCOPE, seq=9, prev=bytes(32), key="candidates/7",
            update=b"u" * 60, user="", hlc=1)),
        ("encode(delta)", lambda: encode(delta)),
        ("Delta.hash", lambda: delta.hash),
        ("pack_view", lambda: pack_view(SCOPE, 1, "", view)),
        ("unpackb(old view)", lambda: msgpack.unpackb(packed_view, raw=False)),
    ]
    say("  unprofiled micro-timings of the pieces (best of 3, in isolation):")
    for label, fn in rows:
        n = 3000
        best = min(timeit.repeat(fn, number=n, repeat=3)) / n
        say(f"    {label:52s} {best * 1e6:7.1f} us")
    nested_txn_cost()


async def profile_500(cfg: Config, say: Callable[[str], None]) -> None:
    """Profile the writer thread at 500 writers; print per-change costs."""
    writers = GOAL_WRITERS
    durable = [0.0, 0]
    with tmpdir("profile") as d:
        store = Store(d, Identity.generate(), StoreOptions())
        store.open()
        try:
            await prime(store, writers)
            writer = store.writer
            # Time the durable outer commit: from the end of ctx.before_commit (called
            # right before txn.commit) to the start of finish_batch (called right after).
            make_ctx, finish = writer._make_context, writer._finish_batch
            mark = [0.0]

            def make_context(txn: lmdb.Transaction) -> Any:
                ctx = make_ctx(txn)
                before = ctx.before_commit

                def before_commit() -> None:
                    before()
                    mark[0] = time.perf_counter()
                ctx.before_commit = before_commit
                return ctx

            def finish_batch(ctx: Any, committed: bool) -> None:
                durable[0] += time.perf_counter() - mark[0]
                durable[1] += 1
                finish(ctx, committed)

            writer._make_context = make_context
            writer._finish_batch = finish_batch
            meter = WriterMeter(store)
            await write_phase(store, writers, cfg.warmup, cfg.max_writes)
            durable[:] = [0.0, 0]
            b0, w0, c0 = meter.snapshot()
            loop_cpu = time.thread_time()
            plain = await write_phase(store, writers, cfg.seconds, cfg.max_writes)
            loop_cpu = time.thread_time() - loop_cpu
            b1, w1, c1 = meter.snapshot()
            plain_durable = list(durable)
            prof = cProfile.Profile()
            orig = writer._run_batch

            def run_batch(batch: list[Any]) -> None:
                prof.enable()
                try:
                    orig(batch)
                finally:
                    prof.disable()

            writer._run_batch = run_batch  # type: ignore[method-assign]
            res = await write_phase(store, writers, cfg.seconds, cfg.max_writes)
        finally:
            store.close()
    n = plain.writes
    say(f"500 writers, unprofiled: {plain.rate:,.0f} writes/s, {n / max(1, b1 - b0):.0f} "
        f"changes/batch; writer thread busy {(w1 - w0) / plain.elapsed * 100:.0f}% of wall "
        f"time, {(w1 - w0) / n * 1e6:.0f} us wall / {(c1 - c0) / n * 1e6:.0f} us CPU per "
        f"change; durable outer commit {plain_durable[0] / max(1, plain_durable[1]) * 1e3:.2f}"
        f" ms/batch = {plain_durable[0] / n * 1e6:.1f} us per change; event-loop thread "
        f"{loop_cpu / n * 1e6:.0f} us CPU per change (shares the GIL)")
    changes = res.writes
    say(f"500 writers, writer thread under cProfile: {res.rate:,.0f} writes/s "
        f"({changes:,} changes). Times include cProfile overhead, which inflates "
        "many small Python calls (pycrdt wrappers) more than C work (signing, LMDB):")
    st = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    total = sum(v[3] for (f, _l, fn), v in st.items() if fn == "_run_batch")
    say(f"  {'cumulative, per change':48s} {'us':>7s} {'share':>6s} {'calls':>6s}")
    for label, where, name in PROFILE_ROWS:
        ct = 0.0
        nc = 0
        for (file, _line, func), (_cc, calls, _tt, cum, _callers) in st.items():
            if func == name and where in file:
                ct += cum
                nc += calls
        if nc:
            say(f"  {label:48s} {ct / changes * 1e6:7.1f} {ct / total * 100:5.0f}% "
                f"{nc / changes:6.2f}")
    say("  top 12 functions by own time, per change:")
    rows = sorted(st.items(), key=lambda kv: kv[1][2], reverse=True)[:12]
    for (file, line, func), (_cc, calls, tt, _ct, _c) in rows:
        where = f"{Path(file).parent.name}/{Path(file).name}:{line}" if file != "~" else ""
        say(f"    {tt / changes * 1e6:7.1f} us {calls / changes:6.2f}x  {func[:56]} {where}")
    micro_timings(say)


# --- report ---------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "MET" if ok else "NOT MET"


def report(rounds: list[Round], rss: dict[str, Any] | None, cfg: Config,
           say: Callable[[str], None]) -> bool:
    floor_rate = med([r.floor.rate for r in rounds])
    say("")
    say(f"=== summary: medians of {len(rounds)} round(s) ===")
    say(f"delta envelope: {rounds[0].envelope} B per field change "
        f"({rounds[0].create_envelope} B when a record is created); "
        f"record fields: {len(msgpack.packb(candidate_fields(0)))} B packed")
    say(f"{'':10s} {'writes/s':>10s} {'p50 ms':>8s} {'p99 ms':>8s} {'x floor':>8s} "
        f"{'chg/batch':>10s} {'writer us/chg':>14s}")
    say(f"{'floor':10s} {floor_rate:10,.0f} {med([r.floor.p50 for r in rounds]):8.2f} "
        f"{med([r.floor.p99 for r in rounds]):8.2f} {1.0:8.2f} {'1':>10s} {'':>14s}")
    summary: dict[int, tuple[float, float, float, float]] = {}
    for n in cfg.levels:
        res = [r.levels[n] for r in rounds]
        rate = med([x.rate for x in res])
        p50 = med([x.p50 for x in res])
        p99 = med([x.p99 for x in res])
        ratio = med([r.levels[n].rate / r.floor.rate for r in rounds])
        per_batch = med([x.writes / max(1, x.batches) for x in res])
        us = med([x.writer_wall / x.writes * 1e6 for x in res])
        cpu = med([x.writer_cpu / x.writes * 1e6 for x in res])
        summary[n] = (rate, p50, p99, ratio)
        label = f"{n} writer" + ("s" if n > 1 else "")
        say(f"{label:10s} {rate:10,.0f} {p50:8.2f} {p99:8.2f} {ratio:8.2f} "
            f"{per_batch:10.1f} {f'{us:.0f} ({cpu:.0f} cpu)':>14s}")
    say("(x floor = median over rounds of store writes/s / floor writes/s of the same round;"
        " writer us/chg = writer thread wall time inside batches per change)")
    ok = True
    if GOAL_WRITERS in summary:
        rate, _p50, p99, ratio = summary[GOAL_WRITERS]
        ok_ratio = ratio >= GOAL_RATIO
        ok_p99 = p99 <= GOAL_P99_MS
        ok = ok_ratio and ok_p99
        say("")
        say(f"goal, {GOAL_WRITERS} writers: writes/s >= {GOAL_RATIO}x floor: "
            f"{ratio:.2f}x ({rate:,.0f} vs {GOAL_RATIO * floor_rate:,.0f} needed) "
            f"-> {verdict(ok_ratio)}")
        say(f"goal, {GOAL_WRITERS} writers: p99 <= {GOAL_P99_MS:.0f} ms: {p99:.2f} ms "
            f"-> {verdict(ok_p99)}")
        say(f"(note: the writers never pause, so by Little's law mean latency = "
            f"{GOAL_WRITERS} / writes/s = {GOAL_WRITERS / rate * 1e3:.0f} ms here; p99 <= "
            f"{GOAL_P99_MS:.0f} ms needs >= {GOAL_WRITERS / (GOAL_P99_MS / 1e3):,.0f} writes/s)")
    if rss is not None:
        say("")
        if "error" in rss:
            say(f"RSS step failed: {rss['error']}")
            return False
        b, a = rss["before"], rss["after"]
        say(f"=== RSS after writing {rss['records']:,} records (fresh store, fresh process, "
            f"{cfg.rss_writers} writers) ===")
        say(f"written in {rss['elapsed']:.1f} s ({rss['records'] / rss['elapsed']:,.0f} "
            f"records/s); records in store: {rss['entries']:,}; live docs cached: "
            f"{rss['cached_docs']:,}")
        split = ""
        if "RssAnon" in a:
            split = (f"  (anon {mib(a['RssAnon'])}, file/mmap {mib(a['RssFile'])})")
        say(f"RSS before: {mib(b['rss'])}   after: {mib(a['rss'])}{split}   "
            f"after close: {mib(rss['closed']['rss'])}")
        say(f"LMDB data.mdb: {mib(rss['file_bytes'])} on disk, {mib(rss['used_bytes'])} used "
            f"({rss['used_bytes'] / rss['records']:,.0f} B per record)")
    return ok


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--quick", action="store_true", help="smoke run: 1 round, small counts")
    p.add_argument("--records", type=int, help="records for the RSS step (default 100000)")
    p.add_argument("--rounds", type=int, help="rounds to take medians over (default 3)")
    p.add_argument("--seconds", type=float, help="seconds per measured level (default 3)")
    p.add_argument("--no-rss", action="store_true", help="skip the RSS step")
    p.add_argument("--profile", action="store_true",
                   help="only profile the writer thread at 500 writers (cProfile)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = make_config(args)

    def say(line: str) -> None:
        print(line, flush=True)

    v = versions()
    say(f"examnode store benchmark  {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M:%S %Z}")
    say("  ".join(f"{k} {val}" for k, val in v.items())
        + f"  cpus {os.cpu_count()}  {platform.system()} {platform.machine()}")
    say(f"tmp dir: {tempfile.gettempdir()}; rounds {cfg.rounds}, levels {cfg.levels}, "
        f"{cfg.seconds:g} s or {cfg.max_writes:,} writes per level after {cfg.warmup:g} s "
        f"warm-up")
    started = time.perf_counter()
    if args.profile:
        asyncio.run(profile_500(cfg, say))
        return 0
    rounds: list[Round] = []
    for i in range(cfg.rounds):
        say(f"round {i + 1}/{cfg.rounds}")
        rounds.append(asyncio.run(store_round(cfg, say)))
    rss = None
    if not args.no_rss:
        say(f"RSS step: writing {cfg.records:,} records in a fresh process ...")
        rss = rss_step(cfg.records, cfg.rss_writers)
    ok = report(rounds, rss, cfg, say)
    say(f"\ntotal time {time.perf_counter() - started:.0f} s; goals "
        f"{'met' if ok else 'not met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
