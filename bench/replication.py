"""Benchmark of replication between node processes (DESIGN.md sections 5-7); not a test.

Three nodes run as three OS processes on 127.0.0.1 (``bench/_labnode.py``: each
serves its node exactly as ``examnode run`` does, with its own GIL, like hall
machines): A is made with ``examnode init``, B and C with ``examnode join``
and tokens from A's ``examnode invite``; B and C dial A (``--mesh``: C also
dials B). mDNS is off; all traffic stays on loopback. Measured, in one run:

1. replication lag: A puts at a steady rate (default 1,000 changes/s for
   10 s, ~1,000 records of 5 small fields); A records each put's commit time
   (when the await returned), B and C the time each of A's deltas shows up in
   their store feed (committed there). Lag = arrival - commit, on one clock
   (CLOCK_MONOTONIC). Each lag is split where the receiver's session calls
   ``Store.apply_chain`` (timed by the harness). Baselines: A's own commit
   latency at that rate, and a raw durable LMDB transaction measured before
   the nodes start. Goal: p99 lag <= 50 ms.
2. catch-up: C is stopped; A writes 100,000 deltas (200 concurrent writers;
   B follows live); C is started again and we time from its session with A
   coming up (and from process start) until C's head of A's chain equals
   A's. Goal >= 10,000 deltas/s. Baseline: the same deltas applied with
   ``Store.apply_chain`` (batches and window as on the wire) into a fresh
   store in this process, no network. C's writer thread is metered (busy
   share, wall and CPU per delta).
3. bytes per delta: from A's ``GET /api/replication/status/``, (wire_bytes_sent
   - update_bytes_sent) / deltas sent, for both phases, beside the mean CRDT
   update size. Goal <= 120 B. Those counters are msgpack chain messages
   before websocket and TLS framing; the framing is estimated per message
   and also measured with ``ss`` (TCP payload bytes A sent on its replication
   port).

The machine is shared: the CPU time of our three nodes and of every other
process during each phase is printed beside the results (psutil).

Run: ``cd /work/main && PYTHONPATH=. .venv/bin/python bench/replication.py [--quick]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import math
import os
import platform
import pstats
import queue
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import psutil

from bench._common import med, package_versions, pct

ROOT = Path(__file__).resolve().parents[1]
HARNESS = Path(__file__).with_name("_labnode.py")
EXAMNODE = [sys.executable, "-m", "node.cli.main"]
CENTER = "BENCH"
GOAL_LAG_P99_MS = 50.0
GOAL_CATCHUP = 10_000.0  # deltas/s
GOAL_OVERHEAD = 120.0  # bytes per delta
TLS_RECORD = 16_384  # largest TLS plaintext record
TLS13_OVERHEAD = 5 + 1 + 16  # record header, inner content type, AEAD tag (AES-GCM/ChaCha)
WS_SPLIT = 2**14  # aiohttp writes a frame header separately above this size (own TLS record)


# --- configuration ----------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    rounds: int = 1
    rate: float = 1000.0  # puts/s in the lag phase
    seconds: float = 10.0  # length of the lag phase
    keys: int = 1000  # distinct records written
    catchup: int = 100_000  # deltas C must catch up
    concurrency: int = 200  # writers on A while C is away
    mesh: bool = False
    profile: bool = False


def make_config(args: argparse.Namespace) -> Config:
    cfg = Config(seconds=2.0, catchup=10_000) if args.quick else Config()
    over = {k: getattr(args, k) for k in ("rounds", "rate", "seconds", "keys", "catchup",
                                          "concurrency") if getattr(args, k) is not None}
    return Config(**{**cfg.__dict__, **over, "mesh": args.mesh, "profile": args.profile})


# --- helpers ------------------------------------------------------------------------------


def versions() -> dict[str, str]:
    out = package_versions("aiohttp", "lmdb", "pycrdt", "pynacl", "msgpack", "cryptography")
    out["openssl"] = ssl.OPENSSL_VERSION.split()[1]
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NODE_")}
    return {**env, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1",
            "NODE_HTTP_ACCESS_LOG": "false", **(extra or {})}


def cli(*args: str) -> str:
    """Run ``examnode ARGS``; return its stdout or fail with its output."""
    proc = subprocess.run([*EXAMNODE, *args], capture_output=True, text=True, timeout=120,
                          env=child_env(), cwd=ROOT, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"examnode {args[0]} exited {proc.returncode}:\n{proc.stdout}"
                           f"{proc.stderr}")
    return proc.stdout


def http_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as r:  # loopback only
        return json.loads(r.read())


def tcp_bytes_sent(port: int) -> int | None:
    """Sum of TCP payload bytes sent by the established sockets on local ``port`` (ss)."""
    try:
        out = subprocess.run(["ss", "-tinH", "state", "established", f"( sport = :{port} )"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.findall(r"\bbytes_sent:(\d+)", out)
    return sum(int(x) for x in found) if found else None


def ws_tls_overhead(length: int) -> int:
    """Websocket header + TLS 1.3 record overhead of one unmasked binary frame of ``length``.

    A is the server of both sessions (B and C dial it), so its frames carry no mask.
    aiohttp writes header and payload in one write up to 16 KiB, else two writes,
    and asyncio's SSL transport makes each write its own TLS record(s).
    """
    header = 2 if length < 126 else 4 if length < 65536 else 10
    if length > WS_SPLIT:
        records = 1 + math.ceil(length / TLS_RECORD)
    else:
        records = math.ceil((header + length) / TLS_RECORD)
    return header + records * TLS13_OVERHEAD


@dataclass
class CpuMark:
    """System-wide busy CPU seconds and those of our node processes, at one moment."""

    t: float
    busy: float
    ours: dict[int, float]

    @staticmethod
    def take(nodes: Sequence[LabNode]) -> CpuMark:
        ct = psutil.cpu_times()
        busy = sum(getattr(ct, f) for f in ("user", "nice", "system", "irq", "softirq",
                                               "steal") if hasattr(ct, f))
        ours = {}
        for n in nodes:
            if n.proc is not None:
                with contextlib.suppress(psutil.Error):
                    c = psutil.Process(n.proc.pid).cpu_times()
                    ours[n.proc.pid] = c.user + c.system
        return CpuMark(time.monotonic(), busy, ours)

    def since(self, before: CpuMark) -> tuple[float, float]:
        """(CPUs used by our nodes, CPUs used by everything else) on average in between."""
        wall = max(1e-9, self.t - before.t)
        ours = sum(v - before.ours.get(pid, 0.0) for pid, v in self.ours.items())
        return ours / wall, max(0.0, (self.busy - before.busy) - ours) / wall


@contextmanager
def tmpdir(tag: str) -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix=f"examnode-bench-{tag}-"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


# --- node processes -----------------------------------------------------------------------


class LabNode:
    """One ``_labnode.py`` process, commanded by JSON lines."""

    def __init__(self, name: str, data: Path, logs: Path) -> None:
        self.name = name
        self.data = data
        self.log_path = logs / f"{name}.log"
        self.proc: subprocess.Popen[str] | None = None
        self.ready: dict[str, Any] = {}
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self._replies: dict[int, dict[str, Any]] = {}
        self._cond = threading.Condition()
        self._next = 0
        self._log: TextIO | None = None
        self._reader: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, *, env: dict[str, str] | None = None, extra: Sequence[str] = (),
              timeout: float = 60) -> None:
        assert not self.running
        self._log = self.log_path.open("a", encoding="utf-8")
        self.ready = {}
        self.events = queue.Queue()
        self.proc = subprocess.Popen(
            [sys.executable, str(HARNESS), "--data", str(self.data), *extra],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, text=True,
            bufsize=1, env=child_env(env), cwd=ROOT)
        self._reader = threading.Thread(target=self._read, args=(self.proc.stdout,),
                                        name=f"bench-read-{self.name}", daemon=True)
        self._reader.start()
        ev = self.event("ready", timeout)
        self.ready = ev

    def _read(self, stream: TextIO) -> None:
        for line in stream:
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if "id" in msg:
                with self._cond:
                    self._replies[msg["id"]] = msg
                    self._cond.notify_all()
            else:
                self.events.put(msg)
        self.events.put({"event": "eof"})

    def event(self, kind: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                ev = self.events.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise RuntimeError(f"{self.name}: no {kind} within {timeout:.0f} s\n"
                                   f"{self.log_tail()}") from None
            if ev.get("event") == kind:
                return ev
            if ev.get("event") == "eof":
                raise RuntimeError(f"{self.name} exited while waiting for {kind}\n"
                                   f"{self.log_tail()}")

    def call(self, cmd: str, timeout: float = 60, **kw: Any) -> dict[str, Any]:
        assert self.proc is not None
        assert self.proc.stdin is not None
        with self._cond:
            self._next += 1
            mid = self._next
        self.proc.stdin.write(json.dumps({"id": mid, "cmd": cmd, **kw}) + "\n")
        self.proc.stdin.flush()
        deadline = time.monotonic() + timeout
        with self._cond:
            while mid not in self._replies:
                left = deadline - time.monotonic()
                if left <= 0 or not self.running:
                    raise RuntimeError(f"{self.name}: no answer to {cmd} "
                                       f"(running={self.running})\n{self.log_tail()}")
                self._cond.wait(min(left, 0.2))
            reply = self._replies.pop(mid)
        if not reply.get("ok"):
            raise RuntimeError(f"{self.name}: {cmd} failed: {reply.get('error')}")
        return reply

    def head(self, pk: str) -> int:
        return int(self.call("vv")["vv"].get(f"{pk}/{CENTER}", 0))

    def stop(self, timeout: float = 60) -> None:
        """Stop cleanly (the harness's ``quit``), killing it if it does not exit."""
        if self.proc is None:
            return
        if self.running:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write(json.dumps({"id": 0, "cmd": "quit"}) + "\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=timeout)
            except (OSError, subprocess.TimeoutExpired, ValueError):
                pass
        self.close()

    def close(self) -> None:
        """Kill the process if it still runs and release pipes (never raises)."""
        if self.proc is None:
            return
        with contextlib.suppress(Exception):
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait(timeout=30)
        for stream in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(Exception):
                if stream is not None:
                    stream.close()
        if self._reader is not None:
            self._reader.join(timeout=5)
        if self._log is not None:
            self._log.close()
            self._log = None
        self.proc = None

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return f"--- {self.name} log (tail) ---\n" + "\n".join(text.splitlines()[-lines:])


@dataclass
class Cluster:
    root: Path
    a: LabNode
    b: LabNode
    c: LabNode
    api_a: int
    c_env: dict[str, str] = field(default_factory=dict)

    @property
    def nodes(self) -> list[LabNode]:
        return [self.a, self.b, self.c]

    @property
    def pk_a(self) -> str:
        return str(self.a.ready["pk"])

    def status_a(self) -> dict[str, Any]:
        result: dict[str, Any] = http_json(
            f"http://127.0.0.1:{self.api_a}/api/replication/status/")
        return result

    def peer_counters(self, node: LabNode) -> dict[str, int]:
        """A's session counters for ``node`` (+ chain messages sent: ``frames``)."""
        nid = node.ready["node_id"]
        for p in self.status_a()["peers"]:
            if p["node_id"] == nid:
                frames = self.a.call("frames")["frames"].get(nid, 0)
                return {"sent": p["sent"], "wire": p["wire_bytes_sent"],
                        "update": p["update_bytes_sent"], "frames": frames}
        raise RuntimeError(f"A has no session with {node.name}")

    def wait_heads(self, nodes: Sequence[LabNode], target: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            heads = [n.head(self.pk_a) for n in nodes]
            if all(h >= target for h in heads):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"nodes {[n.name for n in nodes]} at {heads} of A's chain, "
                                   f"not {target}, after {timeout:.0f} s")
            time.sleep(0.05)

    def wait_sessions(self, timeout: float = 60) -> None:
        want = {self.b.ready["node_id"], self.c.ready["node_id"]}
        deadline = time.monotonic() + timeout
        while True:
            have = {p["node_id"] for p in self.status_a()["peers"] if p["state"] == "connected"}
            if want <= have:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"A's sessions: {sorted(have)}; want {sorted(want)}")
            time.sleep(0.1)


def build_cluster(root: Path, cfg: Config, say: Callable[[str], None],
                  started: list[LabNode]) -> Cluster:
    """init A, start it, invite+join B and C, start them, wait for both sessions.

    Every node made is appended to ``started`` at once, so the caller can stop it
    whatever fails later.
    """
    logs = root / "logs"
    logs.mkdir()
    api = {n: free_port() for n in "abc"}
    cli("init", "--data", str(root / "a"), "--center", CENTER, "--name", "bench-a",
        "--listen", f"127.0.0.1:{api['a']}", "--replication-port", "0",
        "--mdns-interface", "none")
    a = LabNode("a", root / "a", logs)
    started.append(a)
    a.start()
    nodes = {"a": a}
    for n in "bc":
        token = cli("invite", "--data", str(root / "a")).strip().splitlines()[-1]
        cli("join", "--data", str(root / n), "--token", token, "--name", f"bench-{n}",
            "--listen", f"127.0.0.1:{api[n]}", "--replication-port", "0",
            "--mdns-interface", "none")
        nodes[n] = LabNode(n, root / n, logs)
        started.append(nodes[n])
    cl = Cluster(root, a, nodes["b"], nodes["c"], api["a"])
    cl.b.start()
    if cfg.mesh:
        peers = [f"127.0.0.1:{a.ready['port']}", f"127.0.0.1:{cl.b.ready['port']}"]
        cl.c_env = {"NODE_DISCOVERY_PEERS": ",".join(peers)}
    cl.c.start(env=cl.c_env)
    cl.wait_sessions()
    say(f"cluster up: A {a.ready['node_id']} (repl port {a.ready['port']}), "
        f"B {cl.b.ready['node_id']}, C {cl.c.ready['node_id']}"
        f"{' (C also dials B)' if cfg.mesh else ''}")
    return cl


# --- phase 1: replication lag -------------------------------------------------------------


@dataclass
class LagResult:
    offered: float
    achieved: float
    commit_p50: float
    commit_p99: float
    lag: dict[str, tuple[float, float, float, int, int]]  # name -> p50, p99, max ms, n, missing
    stages: dict[str, tuple[float, float, float, float]]  # name -> transfer p50/p99, apply p50/p99
    cpu: tuple[float, float]  # CPUs busy: our three nodes, everything else on the machine
    deltas: int
    counters: dict[str, dict[str, int]]  # name -> A's session counter deltas
    tcp: int | None


def counter_diff(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before.get(k, 0) for k in after}


def lag_phase(cl: Cluster, cfg: Config) -> LagResult:
    pk = cl.pk_a
    receivers = [cl.b, cl.c]
    for n in receivers:
        n.call("record", origin=pk, scope=CENTER)
    before = {n.name: cl.peer_counters(n) for n in receivers}
    tcp0 = tcp_bytes_sent(cl.a.ready["port"])
    cpu0 = CpuMark.take(cl.nodes)
    res = cl.a.call("paced", timeout=cfg.seconds * 5 + 60, rate=cfg.rate,
                    seconds=cfg.seconds, keys=cfg.keys)
    cpu = CpuMark.take(cl.nodes).since(cpu0)
    head = max(res["seq"])
    cl.wait_heads(receivers, head, timeout=60)
    time.sleep(0.2)  # let A's acks and counters settle
    after = {n.name: cl.peer_counters(n) for n in receivers}
    tcp1 = tcp_bytes_sent(cl.a.ready["port"])
    committed = dict(zip(res["seq"], res["committed"], strict=True))
    commit_lat = [(c - i) * 1e3 for c, i in zip(res["committed"], res["issued"], strict=True)]
    lag: dict[str, tuple[float, float, float, int, int]] = {}
    stages: dict[str, tuple[float, float, float, float]] = {}
    for n in receivers:
        got = n.call("arrivals")
        seen = {s: t for s, t in got["arrivals"] if s in committed}
        lags = [(t - committed[s]) * 1e3 for s, t in seen.items()]
        lag[n.name] = (pct(lags, 0.5), pct(lags, 0.99), max(lags, default=math.nan),
                       len(lags), len(committed) - len(seen))
        # Split each lag at the receiver's Store.apply_chain call: before it, A's pump,
        # the socket and the receiver's session reader; after it, the receiver's writer
        # queue, apply and fsync (the feed event follows the commit at once).
        call_at = {seq: t for lo, hi, t, _d in got["applies"] for seq in range(lo, hi + 1)}
        transfer = [(call_at[q] - committed[q]) * 1e3 for q in seen if q in call_at]
        apply = [(t - call_at[q]) * 1e3 for q, t in seen.items() if q in call_at]
        stages[n.name] = (pct(transfer, 0.5), pct(transfer, 0.99), pct(apply, 0.5),
                          pct(apply, 0.99))
    span = max(res["committed"]) - res["t0"]
    return LagResult(
        offered=cfg.rate, achieved=len(res["seq"]) / span,
        commit_p50=pct(commit_lat, 0.5), commit_p99=pct(commit_lat, 0.99), lag=lag,
        stages=stages, cpu=cpu,
        deltas=len(res["seq"]),
        counters={k: counter_diff(after[k], before[k]) for k in after},
        tcp=None if tcp0 is None or tcp1 is None else tcp1 - tcp0)


# --- phase 2: catch-up --------------------------------------------------------------------


@dataclass
class CatchupResult:
    deltas: int
    from_up: float  # s from session up to caught up
    from_start: float  # s from process start to caught up
    startup: float  # s from process start to session up
    write_rate: float  # A's writes/s while C was away
    write_p99: float
    counters: dict[str, int]
    tcp: int | None
    chain_range: tuple[int, int]  # (C's head before, target]
    cpu: tuple[float, float]  # CPUs busy: our three nodes, everything else on the machine
    writer: dict[str, float]  # C's writer thread: wall, cpu (s in batches), batches, items

    @property
    def rate(self) -> float:
        return self.deltas / self.from_up if self.from_up > 0 else math.nan


def catchup_phase(cl: Cluster, cfg: Config, rnd: int) -> CatchupResult:
    pk = cl.pk_a
    head_c = cl.c.head(pk)
    cl.c.stop()
    res = cl.a.call("burst", timeout=cfg.catchup / 100 + 120, n=cfg.catchup,
                    concurrency=cfg.concurrency, keys=cfg.keys)
    target = cl.a.head(pk)
    cl.wait_heads([cl.b], target, timeout=cfg.catchup / 500 + 60)  # B idle during catch-up
    tcp0 = tcp_bytes_sent(cl.a.ready["port"])
    extra = ["--watch", f"{pk}:{CENTER}:{target}", "--watch-peer", cl.a.ready["node_id"]]
    if cfg.profile:
        extra += ["--cprofile", str(cl.root / f"c-catchup-{rnd}.prof")]
    cpu0 = CpuMark.take(cl.nodes)
    cl.c.start(env=cl.c_env, extra=extra)
    ev = cl.c.event("caughtup", timeout=cfg.catchup / 200 + 120)
    cpu = CpuMark.take(cl.nodes).since(cpu0)
    time.sleep(0.2)
    counters = cl.peer_counters(cl.c)
    tcp1 = tcp_bytes_sent(cl.a.ready["port"])
    if ev["t_up"] is None:
        raise RuntimeError("C caught up without a session with A (mesh relay?)")
    return CatchupResult(
        deltas=target - head_c, from_up=ev["t_done"] - ev["t_up"],
        from_start=ev["t_done"] - ev["t_start"], startup=ev["t_up"] - ev["t_start"],
        write_rate=res["written"] / res["elapsed"], write_p99=res["p99"] * 1e3,
        counters=counters, tcp=None if tcp0 is None or tcp1 is None else tcp1 - tcp0,
        chain_range=(head_c, target), cpu=cpu, writer=ev["writer"])


# --- floor: one durable LMDB transaction --------------------------------------------------


ENVELOPE = 236  # bytes of one stored delta envelope (bench/store.py measures it)


def fsync_floor(seconds: float = 1.5) -> tuple[float, float]:
    """p50/p99 ms of one durable raw LMDB write transaction, nothing else running.

    ``bench.store.run_floor`` makes (and removes) its environment in the temp dir,
    the file system the nodes' data directories are on.
    """
    from bench.store import run_floor

    res = run_floor(ENVELOPE, seconds, 20_000, 0.3)
    return res.p50, res.p99


# --- baseline: apply_chain in-process -----------------------------------------------------


def baseline_apply(data_a: Path, ranges: list[tuple[int, int]], batch: int, window: int,
                   work: Path) -> list[float]:
    """Apply A's chain into a fresh store; time each catch-up range (deltas/s)."""
    from node.identity import Identity
    from node.store import Store, StoreOptions

    ident = Identity.load(data_a)
    source = Store(data_a, ident, StoreOptions())
    source.open()
    try:
        pk = ident.public_key
        last = max(hi for _lo, hi in ranges)
        batches: list[list[Any]] = []
        after = 0
        while after < last:
            items = source.chain_items(pk, CENTER, after, min(batch, last - after))
            if not items:
                raise RuntimeError(f"A's chain ends at {after}, not {last}")
            batches.append(items)
            after = items[-1][0]
    finally:
        source.close()

    async def apply(store: Store, todo: list[list[Any]]) -> None:
        sem = asyncio.Semaphore(window)

        async def one(items: list[Any]) -> None:
            async with sem:
                r = await store.apply_chain(pk, CENTER, items)
                if r.applied != len(items) or r.reason:
                    raise RuntimeError(f"baseline apply refused: {r}")

        await asyncio.gather(*(one(b) for b in todo))

    rates: list[float] = []
    store = Store(work, Identity.generate(), StoreOptions())
    store.open()
    try:
        store.trust(pk, "bench A")
        done = 0
        for lo, hi in sorted(ranges):
            before = [b for b in batches if done < b[0][0] <= lo]
            asyncio.run(apply(store, before))
            todo = [b for b in batches if lo < b[0][0] <= hi]
            t = time.perf_counter()
            asyncio.run(apply(store, todo))
            rates.append(sum(len(b) for b in todo) / (time.perf_counter() - t))
            done = hi
    finally:
        store.close()
    return rates


# --- profile summary ------------------------------------------------------------------------


def print_profile(path: Path, label: str, deltas: int, say: Callable[[str], None],
                  rows: int = 14) -> None:
    try:
        st = pstats.Stats(str(path))
    except (OSError, TypeError, EOFError):
        say(f"  ({label}: no profile at {path})")
        return
    stats = st.stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in stats.values())
    say(f"  {label}: {total / deltas * 1e6:.0f} us own time per delta in total "
        f"(cProfile inflates small Python calls); top by own time, per delta:")
    for (file, line, func), (_cc, calls, tt, ct, _c) in sorted(
            stats.items(), key=lambda kv: kv[1][2], reverse=True)[:rows]:
        where = f"{Path(file).parent.name}/{Path(file).name}:{line}" if file != "~" else ""
        say(f"    {tt / deltas * 1e6:7.1f} us own {ct / deltas * 1e6:7.1f} cum "
            f"{calls / deltas:6.2f}x  {func[:50]} {where}")


# --- report ---------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "MET" if ok else "NOT MET"


def overhead_lines(label: str, c: dict[str, int], tcp: int | None,
                   say: Callable[[str], None]) -> float:
    sent, frames = max(1, c["sent"]), max(1, c["frames"])
    over = (c["wire"] - c["update"]) / sent
    per_msg = c["wire"] / frames
    est = ws_tls_overhead(int(per_msg)) / (sent / frames)
    say(f"  {label:9s} {c['sent']:>8,} deltas in {c['frames']:>6,} chain msgs "
        f"({sent / frames:6.1f}/msg): update {c['update'] / sent:6.1f} B/delta, "
        f"chain msg {c['wire'] / sent:6.1f} B/delta, overhead {over:6.1f} B/delta; "
        f"+ ws/TLS framing est. {est:5.2f} B/delta")
    if tcp is not None:
        say(f"  {'':9s} measured TCP payload sent by A on its replication port (ss): "
            f"{tcp / sent:6.1f} B/delta (incl. TLS, websocket, pings, handshakes), i.e. "
            f"{(tcp - c['wire']) / sent:+.1f} B/delta over the chain messages")
    return over


def report(lags: list[LagResult], cups: list[CatchupResult], base: list[float],
           floor: tuple[float, float] | None, cfg: Config, say: Callable[[str], None]) -> bool:
    say("")
    say(f"=== summary: medians of {len(lags)} round(s) ===")
    say(f"1. replication lag at {cfg.rate:,.0f} puts/s offered for {cfg.seconds:g} s "
        f"({cfg.keys:,} records, 5 fields), arrival in the peer's feed - commit on A:")
    say(f"   achieved write rate on A: {med([r.achieved for r in lags]):,.0f} changes/s "
        f"({lags[0].deltas:,} puts per round)")
    say(f"   baseline, A's commit latency (put issued -> await returned): "
        f"p50 {med([r.commit_p50 for r in lags]):.2f} ms  p99 "
        f"{med([r.commit_p99 for r in lags]):.2f} ms")
    if floor is not None:
        say(f"   (floor, before the nodes started: one durable raw LMDB transaction of "
            f"{ENVELOPE} B alone: p50 {floor[0]:.2f} ms  p99 {floor[1]:.2f} ms; the three "
            f"nodes share this disk and {os.cpu_count()} CPUs)")
    ok_lag = True
    for name in ("b", "c"):
        p50 = med([r.lag[name][0] for r in lags])
        p99 = med([r.lag[name][1] for r in lags])
        mx = med([r.lag[name][2] for r in lags])
        missing = sum(r.lag[name][4] for r in lags)
        ok_lag = ok_lag and p99 <= GOAL_LAG_P99_MS and missing == 0
        say(f"   lag A->{name.upper()}: p50 {p50:7.2f} ms  p99 {p99:7.2f} ms  max {mx:7.2f} ms"
            f"  ({sum(r.lag[name][3] for r in lags):,} deltas, {missing} not seen)")
        st = [med([r.stages[name][i] for r in lags]) for i in range(4)]
        say(f"     = commit on A -> {name.upper()}'s session calls apply_chain: p50 {st[0]:6.2f}"
            f" p99 {st[1]:7.2f} ms (A's pump, socket, wait behind the previous apply)")
        say(f"     + apply_chain call -> visible in {name.upper()}'s feed (writer queue, apply, "
            f"fsync): p50 {st[2]:6.2f} p99 {st[3]:7.2f} ms")
    say(f"   CPUs busy during the writes: our 3 nodes {med([r.cpu[0] for r in lags]):.2f}, "
        f"other processes on the machine {med([r.cpu[1] for r in lags]):.2f} "
        f"(of {os.cpu_count()})")
    say(f"   goal p99 lag <= {GOAL_LAG_P99_MS:.0f} ms on B and C: {verdict(ok_lag)}")
    say("")
    rate = med([c.rate for c in cups])
    say(f"2. catch-up of {cups[0].deltas:,} deltas by C (restarted; A wrote them with "
        f"{cfg.concurrency} writers at {med([c.write_rate for c in cups]):,.0f} puts/s, "
        f"p99 {med([c.write_p99 for c in cups]):.0f} ms, while B followed live):")
    say(f"   from session up: {med([c.from_up for c in cups]):.2f} s = {rate:,.0f} deltas/s;"
        f" from C's process start: {med([c.from_start for c in cups]):.2f} s = "
        f"{med([c.deltas / c.from_start for c in cups]):,.0f} deltas/s "
        f"(start to session up {med([c.startup for c in cups]):.2f} s)")
    say(f"   baseline, Store.apply_chain in-process into a fresh store (no network): "
        f"{med(base):,.0f} deltas/s; network path = {rate / med(base):.2f}x baseline")
    c0 = sorted(cups, key=lambda c: c.rate)[len(cups) // 2]  # the median round
    w = c0.writer
    per = 1e6 / c0.deltas
    say(f"   C's writer thread (process start to caught up): busy "
        f"{w['wall'] / c0.from_start:.0%} of the time, {w['wall'] * per:.0f} us wall and "
        f"{w['cpu'] * per:.0f} us CPU per delta, in {w['batches']:,.0f} batches of "
        f"{w['items'] / max(1, w['batches']):.1f} apply_chain calls; C's whole process: "
        f"{w['proc_cpu'] * per:.0f} us CPU per delta")
    say(f"   CPUs busy during the catch-up: our 3 nodes {med([c.cpu[0] for c in cups]):.2f}, "
        f"other processes on the machine {med([c.cpu[1] for c in cups]):.2f} "
        f"(of {os.cpu_count()})")
    ok_cup = rate >= GOAL_CATCHUP
    say(f"   goal >= {GOAL_CATCHUP:,.0f} deltas/s: {verdict(ok_cup)}")
    say("")
    say("3. bytes on the wire per delta, A -> peer (A's replication status counters; chain "
        "messages are msgpack, before websocket/TLS framing):")
    overs = []
    for r in lags:
        live = {k: sum(r.counters[n][k] for n in r.counters) for k in r.counters["b"]}
        overs.append(overhead_lines("live", live, r.tcp, say))
    for c in cups:
        overs.append(overhead_lines("catch-up", c.counters, c.tcp, say))
    ok_bytes = max(overs) <= GOAL_OVERHEAD
    say(f"   framing estimate: websocket header 2-10 B per message (A is the server: no "
        f"mask) + TLS 1.3 {TLS13_OVERHEAD} B per record (<= 16 KiB; aiohttp writes the "
        f"header of a frame > 16 KiB as its own record); TCP/IP headers not counted")
    say(f"   goal overhead <= {GOAL_OVERHEAD:.0f} B/delta (chain messages): "
        f"worst {max(overs):.1f} -> {verdict(ok_bytes)}")
    return ok_lag and ok_cup and ok_bytes


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 2 s lag phase, 10,000 deltas of catch-up")
    p.add_argument("--rounds", type=int, help="rounds (lag + catch-up) for medians (default 1)")
    p.add_argument("--rate", type=float, help="puts/s in the lag phase (default 1000)")
    p.add_argument("--seconds", type=float, help="length of the lag phase (default 10)")
    p.add_argument("--keys", type=int, help="distinct records written (default 1000)")
    p.add_argument("--catchup", type=int, help="deltas C catches up (default 100000)")
    p.add_argument("--concurrency", type=int, help="A's writers while C is away (default 200)")
    p.add_argument("--mesh", action="store_true", help="C also dials B (default: star on A)")
    p.add_argument("--profile", action="store_true",
                   help="cProfile C's event loop and writer thread during catch-up")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = make_config(args)

    def say(line: str) -> None:
        print(line, flush=True)

    def on_term(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)  # run the finally blocks: stop nodes, remove files

    old_term = signal.signal(signal.SIGTERM, on_term)
    say(f"examnode replication benchmark  "
        f"{datetime.datetime.now().astimezone():%Y-%m-%d %H:%M:%S %Z}")
    say("  ".join(f"{k} {val}" for k, val in versions().items())
        + f"  cpus {os.cpu_count()}  {platform.system()} {platform.machine()}  "
        f"load avg {os.getloadavg()[0]:.2f}")
    say(f"3 node processes on 127.0.0.1; rounds {cfg.rounds}; lag phase {cfg.rate:,.0f} puts/s"
        f" x {cfg.seconds:g} s; catch-up {cfg.catchup:,} deltas; {cfg.keys:,} records")
    started = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="examnode-bench-repl-"))
    nodes: list[LabNode] = []
    try:
        floor = fsync_floor()
        say(f"floor: durable raw LMDB txn alone p50 {floor[0]:.2f} ms p99 {floor[1]:.2f} ms")
        cl = build_cluster(root, cfg, say, nodes)
        cl.a.call("prime", keys=cfg.keys)
        cl.wait_heads([cl.b, cl.c], cl.a.head(cl.pk_a), timeout=60)
        lags: list[LagResult] = []
        cups: list[CatchupResult] = []
        for i in range(cfg.rounds):
            say(f"round {i + 1}/{cfg.rounds}")
            lag = lag_phase(cl, cfg)
            lags.append(lag)
            say(f"  lag: {lag.achieved:,.0f} puts/s achieved; commit p50 {lag.commit_p50:.2f}"
                f" p99 {lag.commit_p99:.2f} ms; "
                + "; ".join(f"{n.upper()} p50 {v[0]:.2f} p99 {v[1]:.2f} max {v[2]:.1f} ms"
                            f"{f' ({v[4]} not seen)' if v[4] else ''}"
                            for n, v in lag.lag.items())
                + f"; CPUs: nodes {lag.cpu[0]:.2f}, others {lag.cpu[1]:.2f}")
            cup = catchup_phase(cl, cfg, i)
            cups.append(cup)
            say(f"  catch-up: A wrote {cfg.catchup:,} at {cup.write_rate:,.0f}/s; C caught "
                f"up {cup.deltas:,} in {cup.from_up:.2f} s from session up = "
                f"{cup.rate:,.0f} deltas/s ({cup.from_start:.2f} s from process start); "
                f"CPUs: nodes {cup.cpu[0]:.2f}, others {cup.cpu[1]:.2f}")
        for n in nodes:
            n.stop()
        say("baseline: applying the same ranges of A's chain in-process ...")
        base = baseline_apply(root / "a", [c.chain_range for c in cups], batch=500, window=8,
                              work=root / "baseline")
        say("  " + ", ".join(f"{r:,.0f} deltas/s" for r in base))
        ok = report(lags, cups, base, floor, cfg, say)
        if cfg.profile:
            say("")
            say("profile of C during catch-up (cProfile; own time per delta):")
            for i, c in enumerate(cups):
                for part in ("loop", "writer"):
                    print_profile(root / f"c-catchup-{i}.prof.{part}", f"round {i + 1} {part}",
                                  c.deltas, say)
        say(f"\ntotal time {time.perf_counter() - started:.0f} s; load avg now "
            f"{os.getloadavg()[0]:.2f}; goals {'met' if ok else 'not met'}")
    except BaseException:
        for n in nodes:
            if n.running:
                say(n.log_tail())
        raise
    finally:
        for n in nodes:
            n.close()
        signal.signal(signal.SIGTERM, old_term)
        if args.keep:
            say(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
