"""Test-side harness: node processes (``labnode.py``) and network-namespace labs.

``NodeProc`` drives one real node process over its stdin/stdout. ``Lab``
builds a bridge and N network namespaces (NETWORK-TESTING.md), makes and
joins nodes inside them, cuts and heals links, and tears everything down.
All names carry a random tag, so parallel or aborted runs never collide;
10.77.0.x addresses exist only inside the lab's namespaces.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TextIO

ROOT = Path(__file__).resolve().parents[2]
LABNODE = Path(__file__).with_name("labnode.py")
EXAMNODE = [sys.executable, "-m", "node.cli.main"]
CENTER = "LAB"
API_PORT = 8700
REPL_PORT = 8701

# Shorter protocol delays than production (the python-zeroconf habit): a dead
# peer is noticed in 3 s, a lost one redialled within 1 s.
FAST = {"NODE_REPLICATION_HEARTBEAT": "0.5", "NODE_REPLICATION_DEAD_AFTER": "3",
        "NODE_REPLICATION_BACKOFF_MAX": "1", "NODE_HTTP_ACCESS_LOG": "false"}


def base_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Return the environment of node and CLI processes."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NODE_")}
    return {**env, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", **FAST, **(extra or {})}


def run(cmd: list[str], *, timeout: float = 60, check: bool = True,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command; with ``check``, fail with its output when it fails."""
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False,
                          env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}:\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


class NodeProc:
    """One ``labnode.py`` process: start, command, stop, kill, restart."""

    def __init__(self, name: str, data: Path, *, netns: str | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.name = name
        self.data = data
        self.netns = netns
        self.env = dict(env or {})
        self.log_path = data.parent / f"{name}.log"
        self.node_id = ""
        self.acked: dict[str, str] = {}  # every key this process acknowledged, ever
        self.bursts: dict[str, int] = {}  # prefix -> failed puts, once the burst ended
        self.nacks: list[str] = []
        self._proc: subprocess.Popen[str] | None = None
        self._log: TextIO | None = None
        self._reader: threading.Thread | None = None
        self._replies: queue.Queue[str] = queue.Queue()
        self._cond = threading.Condition()
        self._ready = threading.Event()

    # --- process --------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 45) -> None:
        """Start the node and wait for READY."""
        assert not self.running, f"{self.name} already runs"
        cmd = [sys.executable, str(LABNODE), "--data", str(self.data)]
        if self.netns is not None:
            cmd = ["ip", "netns", "exec", self.netns, *cmd]  # ip execs: the pid is python's
        self._log = self.log_path.open("a", encoding="utf-8")
        self._log.write(f"===== start {time.strftime('%H:%M:%S')} =====\n")
        self._log.flush()
        self._ready.clear()
        self._replies = queue.Queue()
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=self._log, text=True, bufsize=1,
                                      env=base_env(self.env), cwd=ROOT)
        self._reader = threading.Thread(target=self._read, args=(self._proc.stdout,),
                                        name=f"lab-reader-{self.name}", daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.1):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self._finish()
                raise AssertionError(f"{self.name} did not start:\n{self.log_tail()}")

    def _read(self, stream: TextIO) -> None:
        for raw in stream:
            line = raw.rstrip("\n")
            kind, _, rest = line.partition(" ")
            if kind == "ACK":
                key, _, value = rest.partition(" ")
                with self._cond:
                    self.acked[key] = value
                    self._cond.notify_all()
            elif kind == "BURST":
                prefix, _n, failed = rest.split(" ")
                with self._cond:
                    self.bursts[prefix] = int(failed)
                    self._cond.notify_all()
            elif kind == "NACK":
                with self._cond:
                    self.nacks.append(rest)
                    self._cond.notify_all()
            elif kind == "READY":
                self.node_id = rest
                self._ready.set()
            else:
                self._replies.put(line)

    def _finish(self) -> int:
        """Reap the process, the reader thread and the pipes; return the exit status."""
        assert self._proc is not None
        if self._proc.poll() is None:
            self._proc.kill()
        code = self._proc.wait(timeout=30)
        if self._proc.stdin is not None:
            with contextlib.suppress(BrokenPipeError):
                self._proc.stdin.close()
        if self._reader is not None:
            self._reader.join(timeout=10)
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        if self._log is not None:
            self._log.close()
            self._log = None
        self._proc = None
        return code

    def stop(self, timeout: float = 60) -> None:
        """SIGTERM and wait; fail unless the node stopped cleanly (exit 0)."""
        assert self._proc is not None, f"{self.name} is not running"
        self._proc.send_signal(signal.SIGTERM)
        try:
            self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        code = self._finish()
        assert code == 0, f"{self.name} did not stop cleanly (exit {code}):\n{self.log_tail()}"

    def kill(self) -> None:
        """``kill -9`` the node."""
        assert self._proc is not None, f"{self.name} is not running"
        self._proc.send_signal(signal.SIGKILL)
        code = self._finish()
        assert code == -signal.SIGKILL, f"{self.name} exited {code} before the kill"

    def close(self) -> None:
        """Kill the process if it still runs (teardown)."""
        if self._proc is not None:
            self._finish()

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return f"--- {self.log_path} (tail) ---\n" + "\n".join(text.splitlines()[-lines:])

    # --- commands -------------------------------------------------------------------------

    def send(self, line: str) -> None:
        assert self._proc is not None and self._proc.stdin is not None, \
            f"{self.name} is not running"
        self._proc.stdin.write(line + "\n")
        self._proc.stdin.flush()

    def query(self, command: str, timeout: float = 30) -> Any:
        """Send ``vv``/``dump``/``status`` and return the decoded reply."""
        tag = command.split()[0].upper()
        self.send(command)
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._replies.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"{self.name}: no answer to {command!r}\n"
                                     f"{self.log_tail()}") from None
            kind, _, rest = line.partition(" ")
            if kind == tag:
                return json.loads(rest)
            if kind == "ERROR":
                raise AssertionError(f"{self.name}: {line}")

    def vv(self) -> dict[str, int]:
        result: dict[str, int] = self.query("vv")
        return result

    def dump(self) -> dict[str, Any]:
        result: dict[str, Any] = self.query("dump")
        return result

    def status(self) -> dict[str, Any]:
        result: dict[str, Any] = self.query("status")
        return result

    def put(self, key: str, value: str, timeout: float = 30) -> None:
        """Write one record and wait for its ACK."""
        self.send(f"put {key} {value}")
        self.wait_for(lambda: self.acked.get(key) == value, f"the ACK of {key}", timeout)

    def burst(self, prefix: str, n: int) -> None:
        """Start n concurrent writes (collect ACKs in the background)."""
        self.send(f"burst {prefix} {n}")

    def wait_burst(self, prefix: str, timeout: float = 120) -> None:
        """Wait for the end of a burst; fail if any put was refused."""
        self.wait_for(lambda: prefix in self.bursts, f"the end of burst {prefix}", timeout)
        assert self.bursts[prefix] == 0, f"{self.name}: failed puts {self.nacks[:5]}"

    def count_acks(self, prefix: str) -> int:
        with self._cond:
            return sum(k.startswith(f"{prefix}-") for k in self.acked)

    def wait_for(self, predicate: Callable[[], bool], what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0 or (self._proc is None or self._proc.poll() is not None):
                    raise AssertionError(f"{self.name}: no {what} within {timeout} s "
                                         f"(running={self.running}, nacks={self.nacks[:3]})\n"
                                         f"{self.log_tail()}")
                self._cond.wait(min(left, 0.2))


def wait_converged(nodes: Iterable[NodeProc], acked: dict[str, str], *, timeout: float = 60,
                   ) -> dict[str, Any]:
    """Wait until ``nodes`` hold equal version vectors, equal records, nothing pending,
    and every acknowledged key with its value; return the common records."""
    nodes = list(nodes)
    deadline = time.monotonic() + timeout
    while True:
        vvs = [n.vv() for n in nodes]
        why = ""
        if any(vv != vvs[0] for vv in vvs):
            why = "version vectors differ"
        else:
            statuses = [n.status() for n in nodes]
            if any(s["pending"] or s["quarantined"] for s in statuses):
                why = f"pending/quarantined: {[(s['pending'], s['quarantined']) for s in statuses]}"
            else:
                dumps = [n.dump() for n in nodes]
                missing = {n.name: [k for k, v in acked.items()
                                    if d.get(f"lab/{k}", {}).get("v") != v]
                           for n, d in zip(nodes, dumps, strict=True)}
                lost = {name: ks for name, ks in missing.items() if ks}
                if lost:
                    # Equal vectors yet missing keys: acknowledged writes were lost.
                    summary = {name: (len(ks), ks[:5]) for name, ks in lost.items()}
                    raise AssertionError(f"acknowledged writes lost: {summary}")
                if any(d != dumps[0] for d in dumps):
                    why = "records differ"
                else:
                    return dumps[0]
        if time.monotonic() > deadline:
            detail = "\n".join(f"{n.name}: vv={vv} status={n.status()}"
                               for n, vv in zip(nodes, vvs, strict=True))
            logs = "\n".join(n.log_tail(15) for n in nodes)
            raise AssertionError(f"no convergence within {timeout} s ({why}):\n{detail}\n{logs}")
        time.sleep(0.3)


def verify(data: Path) -> None:
    """Run ``examnode verify`` on a stopped node's data; fail unless it exits 0."""
    proc = run([*EXAMNODE, "verify", "--data", str(data)], check=False, env=base_env())
    assert proc.returncode == 0, f"verify {data} exited {proc.returncode}:\n" \
                                 f"{proc.stdout}\n{proc.stderr}"


class Lab:
    """A bridge and N namespaces ``<tag>-i`` with 10.77.0.i on their ``eth0``."""

    def __init__(self, size: int, root: Path, *, multicast: bool = True) -> None:
        self.tag = secrets.token_hex(3)
        self.size = size
        self.multicast = multicast
        self.root = root
        self.bridge = f"exbr-{self.tag}"
        self.nodes: dict[int, NodeProc] = {}
        self._made: list[list[str]] = []  # undo commands, run in reverse

    def ns(self, i: int) -> str:
        return f"exlab-{self.tag}-{i}"

    def veth(self, i: int) -> str:
        return f"exv-{self.tag}-{i}"

    @staticmethod
    def addr(i: int) -> str:
        return f"10.77.0.{i}"

    def repl(self, i: int) -> str:
        return f"{self.addr(i)}:{REPL_PORT}"

    def setup(self) -> None:
        run(["ip", "link", "add", self.bridge, "type", "bridge"])
        self._made.append(["ip", "link", "del", self.bridge])
        run(["ip", "link", "set", self.bridge, "up"])
        for i in range(1, self.size + 1):
            ns, veth = self.ns(i), self.veth(i)
            run(["ip", "netns", "add", ns])
            self._made.append(["ip", "netns", "del", ns])
            run(["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns])
            self._made.append(["ip", "link", "del", veth])
            run(["ip", "link", "set", veth, "master", self.bridge, "up"])
            if not self.multicast:  # the bridge stops forwarding multicast (mDNS) to this port
                run(["bridge", "link", "set", "dev", veth, "mcast_flood", "off"])
            run(["ip", "-n", ns, "addr", "add", f"{self.addr(i)}/24", "dev", "eth0"])
            run(["ip", "-n", ns, "link", "set", "eth0", "up", "multicast", "on"])
            run(["ip", "-n", ns, "link", "set", "lo", "up"])

    def teardown(self) -> None:
        """Kill what still runs, then delete links and namespaces (never raises)."""
        for node in self.nodes.values():
            with contextlib.suppress(Exception):
                node.close()
        for cmd in reversed(self._made):
            with contextlib.suppress(Exception):
                subprocess.run(cmd, capture_output=True, timeout=30, check=False)
        self._made.clear()

    def link(self, i: int, up: bool) -> None:
        """Connect (``up``) or cut off namespace ``i`` at its bridge port."""
        run(["ip", "link", "set", self.veth(i), "up" if up else "down"])

    def exec_in(self, i: int, cmd: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        return run(["ip", "netns", "exec", self.ns(i), *cmd], env=base_env(), **kw)

    # --- nodes ----------------------------------------------------------------------------

    def data(self, i: int) -> Path:
        return self.root / f"n{i}"

    def _mdns(self, i: int, mdns: bool) -> str:
        return self.addr(i) if mdns else "none"

    def init(self, i: int, *, mdns: bool = False, env: dict[str, str] | None = None) -> NodeProc:
        """Make the centre's first node in namespace ``i`` (files only, on the host)."""
        run([*EXAMNODE, "init", "--data", str(self.data(i)), "--center", CENTER,
             "--name", f"lab{i}", "--listen", f"{self.addr(i)}:{API_PORT}",
             "--replication-port", str(REPL_PORT), "--mdns-interface", self._mdns(i, mdns)],
            env=base_env())
        return self._node(i, env)

    def join(self, i: int, inviter: int = 1, *, mdns: bool = False,
             env: dict[str, str] | None = None) -> NodeProc:
        """Invite on ``inviter`` (must run) and join from inside namespace ``i``."""
        assert self.nodes[inviter].running, "tokens are redeemed at the inviter's API"
        token = run([*EXAMNODE, "invite", "--data", str(self.data(inviter))],
                    env=base_env()).stdout.strip().splitlines()[-1]
        self.exec_in(i, [*EXAMNODE, "join", "--data", str(self.data(i)), "--token", token,
                         "--name", f"lab{i}", "--listen", f"{self.addr(i)}:{API_PORT}",
                         "--replication-port", str(REPL_PORT),
                         "--mdns-interface", self._mdns(i, mdns)])
        return self._node(i, env)

    def _node(self, i: int, env: dict[str, str] | None) -> NodeProc:
        node = NodeProc(f"n{i}", self.data(i), netns=self.ns(i), env=env)
        self.nodes[i] = node
        return node

    def peers_env(self, *others: int) -> dict[str, str]:
        """Return the environment that sets the static peers to ``others`` (none: [])."""
        return {"NODE_DISCOVERY_PEERS": ",".join(self.repl(j) for j in others)}


def leftovers(tag: str) -> list[str]:
    """Return namespaces and links whose names carry ``tag`` (should be none)."""
    names = run(["ip", "netns", "list"]).stdout.split() + \
        run(["ip", "-o", "link"]).stdout.replace("@", " ").replace(":", " ").split()
    return sorted({n for n in names if tag in n})


def acked(*nodes: NodeProc) -> dict[str, str]:
    """Return every write any of ``nodes`` acknowledged (keys are unique per node)."""
    out: dict[str, str] = {}
    for node in nodes:
        out.update(node.acked)
    return out


def stop_and_verify(*nodes: NodeProc) -> None:
    """Stop ``nodes`` cleanly, then ``examnode verify`` each data dir."""
    for node in nodes:
        if node.running:
            node.stop()
    for node in nodes:
        verify(node.data)


def wait_until(check: Callable[[], bool], what: str, timeout: float,
               detail: Callable[[], str] = lambda: "") -> None:
    """Poll ``check`` until it holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s\n{detail()}")
        time.sleep(0.2)


def wait_mesh(nodes: list[NodeProc], timeout: float = 30) -> None:
    """Wait until every node is in session with every other one."""
    ids = {n.node_id for n in nodes}

    def meshed() -> bool:
        return all(set(n.status()["peers"]) == ids - {n.node_id} for n in nodes)

    wait_until(meshed, "full mesh of peer sessions", timeout,
               lambda: "\n".join(f"{n.name}: {n.status()}\n{n.log_tail(10)}" for n in nodes))


def wait_dropped(survivors: list[NodeProc], gone: NodeProc, timeout: float = 15) -> None:
    """Wait until no survivor still holds a session with the vanished node ``gone``.

    DESIGN.md s7: a peer that vanishes without a goodbye is detected by the session
    (``dead_after``, 3 s here). A session that outlives this is a zombie: it keeps the
    peer's slot and its dialer, so the two nodes would never reconnect.
    """
    wait_until(lambda: all(gone.node_id not in n.status()["peers"] for n in survivors),
               f"survivors dropping their session with the vanished {gone.name}", timeout,
               lambda: "\n".join(f"{n.name}: {n.status()}\ntasks: {n.query('tasks')}"
                                 for n in survivors))
