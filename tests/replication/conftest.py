"""In-process clusters on loopback: real nodes, real TLS peer sessions, one event loop.

``cluster`` builds nodes with the real CLI (``init``, ``provision``, ``invite``,
``join``) called in-process and runs each as a ``RunningNode`` in the test's
event loop. Every node listens on 127.0.0.1 only, with mDNS off
(NETWORK-TESTING.md). Protocol delays are shortened (python-zeroconf's model:
a fixture that shortens delays). Teardown stops every node, proxy and raw
peer the test opened, and fails the test if any task survives.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import socket
import time
import tomllib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import tomli_w

from node.cli.main import main as cli_main
from node.config import CONFIG_FILE
from node.identity import Identity
from node.replication.manager import PATH
from node.replication.tls import client_context
from node.replication.wire import MAX_MESSAGE, pack, unpack
from node.runtime import RunningNode, open_context
from node.services.system import NodeContext
from node.store import Store
from node.store.verify import verify_store

HOST = "127.0.0.1"
# Short protocol delays for every test node (config sections merged into node.toml).
FAST: dict[str, dict[str, Any]] = {
    "replication": {"heartbeat": 0.25, "dead_after": 4.0, "backoff_max": 1.0},
    "http": {"shutdown_timeout": 1.0, "access_log": False},
}


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


async def wait_until(cond: Callable[[], Any], timeout: float = 15, what: str = "",
                     interval: float = 0.05) -> None:
    """Poll ``cond`` (sync or async) until it is truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if isinstance(value, Awaitable):
            value = await value
        if value:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or cond}")
        await asyncio.sleep(interval)


async def stays(cond: Callable[[], Any], duration: float, what: str = "",
                interval: float = 0.05) -> None:
    """Check that ``cond`` holds all through ``duration`` seconds."""
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        assert cond(), f"no longer true: {what or cond}"
        await asyncio.sleep(interval)


@dataclass
class CliResult:
    code: int
    out: str
    err: str


def _run_cli(args: list[str]) -> CliResult:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli_main(args)
        except SystemExit as e:  # argparse usage errors
            code = int(e.code or 0)
    return CliResult(code, out.getvalue(), err.getvalue())


async def cli(*args: str | Path) -> CliResult:
    """Run the examnode CLI in-process, off the event loop (join calls our own API)."""
    return await asyncio.to_thread(_run_cli, [str(a) for a in args])


def edit_config(data: Path, sections: dict[str, dict[str, Any]]) -> None:
    """Merge ``sections`` into ``data/node.toml``."""
    path = data / CONFIG_FILE
    config = tomllib.loads(path.read_text(encoding="utf-8"))
    for name, values in sections.items():
        config.setdefault(name, {}).update(values)
    path.write_text(tomli_w.dumps(config), encoding="utf-8")


def chains(store: Store) -> dict[tuple[bytes, str], int]:
    """Return the version vector of a store."""
    return store.version_vector()


def records(store: Store, collection: str) -> dict[str, dict[str, Any]]:
    """Return {key: data} of a collection."""
    return {v.key: v.data for v in store.scan(collection)}


class Node:
    """One node's data dir, its ports, and the running node while it runs."""

    def __init__(self, name: str, data: Path, http_port: int, repl_port: int) -> None:
        self.name = name
        self.data = data
        self.http_port = http_port
        self.repl_port = repl_port
        self.running: RunningNode | None = None
        self.ctx_: NodeContext | None = None
        self.node_id = Identity.load(data).node_id
        self.public_key = Identity.load(data).public_key

    def __repr__(self) -> str:
        return f"<Node {self.name} {self.node_id[:7]}>"

    @property
    def repl_addr(self) -> str:
        return f"{HOST}:{self.repl_port}"

    @property
    def api(self) -> str:
        return f"http://{HOST}:{self.http_port}"

    @property
    def ctx(self) -> NodeContext:
        assert self.ctx_ is not None, f"{self} is not running"
        return self.ctx_

    @property
    def store(self) -> Store:
        return self.ctx.store

    @property
    def rep(self) -> Any:
        assert self.ctx.replicator is not None, f"{self} does not replicate"
        return self.ctx.replicator

    def peers(self) -> set[str]:
        """Return the node ids of the connected peer sessions."""
        if self.ctx_ is None or self.ctx_.replicator is None:
            return set()
        return {nid for nid, s in self.ctx_.replicator.sessions.items()
                if s.state.state == "connected"}

    async def start(self) -> Node:
        assert self.running is None
        self.ctx_ = open_context(self.data)
        node = RunningNode(self.ctx_)
        try:
            await node.start()
        except BaseException:
            await node.stop()
            self.ctx_ = None
            raise
        self.running = node
        return self

    async def stop(self) -> None:
        if self.running is not None:
            running, self.running = self.running, None
            await running.stop()

    async def verify(self, quarantined: int = 0) -> None:
        """Assert that ``verify_store`` finds nothing wrong on this (running) node."""
        report = await asyncio.to_thread(verify_store, self.store)
        assert report.ok, (self, report.problems)
        assert report.pending == 0, report
        assert report.quarantined == quarantined, report


class Cluster:
    """Builds nodes in ``root`` with the CLI; stops everything it started."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.nodes: list[Node] = []
        self.closers: list[Callable[[], Awaitable[None]]] = []
        self._http: aiohttp.ClientSession | None = None
        self._join_ports: dict[str, tuple[int, int]] = {}

    def _new_dir(self, name: str) -> Path:
        data = self.root / name
        assert not data.exists()
        return data

    def _add(self, name: str, data: Path, http_port: int, repl_port: int,
             config: dict[str, dict[str, Any]] | None) -> Node:
        sections = {k: dict(v) for k, v in FAST.items()}
        for k, v in (config or {}).items():
            sections.setdefault(k, {}).update(v)
        edit_config(data, sections)
        node = Node(name, data, http_port, repl_port)
        self.nodes.append(node)
        return node

    async def init(self, name: str, *, center: str | None = "DEMO", hq: bool = False,
                   from_file: Path | None = None, peers: list[str] | None = None,
                   config: dict[str, dict[str, Any]] | None = None) -> Node:
        """Create a node with ``examnode init`` (its own authority unless ``from_file``)."""
        data = self._new_dir(name)
        http_port, repl_port = free_port(), free_port()
        args: list[str | Path] = ["init", "--data", data, "--name", name,
                                  "--listen", f"{HOST}:{http_port}",
                                  "--replication-port", str(repl_port),
                                  "--mdns-interface", "none"]
        if hq:
            args.append("--hq")
        elif from_file is not None:
            args += ["--from", from_file]
        elif center:
            args += ["--center", center]
        for p in peers or []:
            args += ["--peer", p]
        result = await cli(*args)
        assert result.code == 0, result.err
        return self._add(name, data, http_port, repl_port, config)

    async def provision(self, hq: Node, center: str) -> Path:
        """Write a provisioning file for ``center`` with ``examnode provision``."""
        out = self.root / f"provision-{center}.bin"
        result = await cli("provision", "--data", hq.data, "--center", center, "--out", out)
        assert result.code == 0, result.err
        return out

    async def invite(self, inviter: Node, expires: str = "10m") -> str:
        """Return a join token printed by ``examnode invite``."""
        result = await cli("invite", "--data", inviter.data, "--expires", expires)
        assert result.code == 0, result.err
        return result.out.strip()

    async def try_join(self, name: str, token: str) -> CliResult:
        """Run ``examnode join`` and return its result (the data dir is ``root/name``)."""
        data = self._new_dir(name)
        http_port, repl_port = free_port(), free_port()
        self._join_ports[name] = (http_port, repl_port)
        return await cli("join", "--data", data, "--token", token, "--name", name,
                         "--listen", f"{HOST}:{http_port}",
                         "--replication-port", str(repl_port), "--mdns-interface", "none")

    async def join(self, inviter: Node, name: str, *, peers: list[str] | None = None,
                   config: dict[str, dict[str, Any]] | None = None) -> Node:
        """Join a new node through ``inviter`` (which must run); ``peers`` replaces the
        static peers the inviter handed out."""
        token = await self.invite(inviter)
        result = await self.try_join(name, token)
        assert result.code == 0, result.err
        sections = dict(config or {})
        if peers is not None:
            sections["discovery"] = {**sections.get("discovery", {}), "peers": peers}
        return self._add(name, self.root / name, *self._join_ports[name], sections)

    def configure(self, node: Node, sections: dict[str, dict[str, Any]]) -> None:
        """Merge ``sections`` into the node.toml of a stopped node."""
        assert node.running is None, f"stop {node} first"
        edit_config(node.data, sections)

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        return self._http

    async def get(self, node: Node, path: str) -> tuple[int, Any]:
        async with self.http.get(node.api + path) as resp:
            return resp.status, await resp.json()

    async def post(self, node: Node, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        async with self.http.post(node.api + path, json=body) as resp:
            return resp.status, await resp.json()

    async def close(self) -> None:
        for closer in reversed(self.closers):
            await closer()
        for node in reversed(self.nodes):
            await node.stop()
        if self._http is not None:
            await self._http.close()


def _tasks_left() -> list[str]:
    me = asyncio.current_task()
    return sorted(t.get_name() for t in asyncio.all_tasks() if t is not me and not t.done())


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    """Yield a ``Cluster`` in ``tmp_path``; stop all of it afterwards, leaving no tasks."""
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        await c.close()
    await asyncio.sleep(0)
    assert not _tasks_left(), f"tasks left running: {_tasks_left()}"


# --- convergence ----------------------------------------------------------------------------


def same_state(*nodes: Node, collection: str | None = None) -> bool:
    """Return True when the nodes hold equal version vectors (and equal ``collection``)."""
    first = nodes[0]
    for other in nodes[1:]:
        if chains(other.store) != chains(first.store):
            return False
        if collection and records(other.store, collection) != records(first.store, collection):
            return False
    return True


async def converged(*nodes: Node, collection: str | None = None, timeout: float = 15) -> None:
    """Wait until the nodes agree (DESIGN.md s9, invariant 1)."""
    await wait_until(lambda: same_state(*nodes, collection=collection), timeout,
                     f"{nodes} to converge")


# --- a hand-driven peer -----------------------------------------------------------------------


class RawPeer:
    """A peer session driven by hand with a certified node's TLS material.

    It speaks the wire protocol of ``node.replication.wire`` directly, so a
    test can send what a real node never would.
    """

    def __init__(self, data: Path) -> None:
        self.data = data
        ctx = open_context(data)
        self.identity = ctx.identity
        self.trust = ctx.trust
        assert self.trust is not None
        self.cert_chain = self.trust.chain_der
        self.ssl = client_context(ctx.identity, self.trust, data)
        self.n = 0
        self.hello: dict[str, Any] = {}
        self.received: list[dict[str, Any]] = []
        self._http: aiohttp.ClientSession | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None

    async def connect(self, target: Node, *, hello: bool = True) -> None:
        self._http = aiohttp.ClientSession()
        self.ws = await self._http.ws_connect(f"https://{target.repl_addr}{PATH}", ssl=self.ssl,
                                              max_msg_size=MAX_MESSAGE, autoping=False)
        if hello:
            await self.send({"t": "hello", "id": self.identity.node_id, "center": "",
                             "role": "node", "v": "test", "chain": self.cert_chain, "vv": []})
            msg = await self.recv()
            assert msg is not None and msg["t"] == "hello", msg
            self.hello = msg

    async def send(self, msg: dict[str, Any]) -> None:
        await self.send_raw(pack(msg))

    async def send_raw(self, data: bytes) -> None:
        assert self.ws is not None
        await self.ws.send_bytes(data)

    async def recv(self, timeout: float = 10) -> dict[str, Any] | None:
        """Return the next message, or None once the node closed the session."""
        assert self.ws is not None
        msg = await self.ws.receive(timeout=timeout)
        if msg.type != aiohttp.WSMsgType.BINARY:
            return None
        out = unpack(msg.data)
        self.received.append(out)
        return out

    async def chain(self, origin: bytes, scope: str, items: list[Any],
                    timeout: float = 10) -> dict[str, Any]:
        """Send one chain message and return the node's ack of it."""
        self.n += 1
        await self.send({"t": "chain", "n": self.n, "o": origin, "s": scope, "d": items})
        deadline = time.monotonic() + timeout
        while True:
            msg = await self.recv(max(0.1, deadline - time.monotonic()))
            assert msg is not None, "the node closed the session instead of acknowledging"
            if msg["t"] == "ack" and msg["n"] == self.n:
                return msg
            if msg["t"] == "ping":
                await self.send({"t": "pong", "ts": msg.get("ts"), "wall": time.time()})

    async def closed(self, timeout: float = 5) -> bool:
        """Return True when the node closes the session within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                msg = await self.recv(max(0.1, deadline - time.monotonic()))
            except TimeoutError:
                return False
            except Exception:
                return True
            if msg is None:
                return True
        return False

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._http is not None:
            await self._http.close()


@pytest.fixture
def raw_peer(cluster: Cluster) -> Callable[[Path], RawPeer]:
    """Return a factory of ``RawPeer``s for a node's data dir (closed with the cluster)."""
    def make(data: Path) -> RawPeer:
        peer = RawPeer(data)
        cluster.closers.append(peer.close)
        return peer
    return make


@contextlib.contextmanager
def offline_store(data: Path, identity: Identity | None = None) -> Iterator[Store]:
    """Open the store in ``data`` of a node that is not running, or a bare store of
    ``identity`` (a key no authority certified), to sign deltas by hand."""
    store = Store(data, identity or Identity.load(data))
    store.open()
    try:
        yield store
    finally:
        store.close()


# --- a proxy that can partition two nodes --------------------------------------------------


class Proxy:
    """A TCP relay to one node's replication port that can go silent.

    ``partition`` stops moving bytes without closing anything (a pulled cable
    or a hung switch: the peers learn it only from heartbeats); ``heal``
    resumes. Connections made meanwhile wait.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.open = asyncio.Event()
        self.open.set()
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def addr(self) -> str:
        return f"{HOST}:{self.port}"

    async def start(self) -> Proxy:
        self._server = await asyncio.start_server(self._handle, HOST, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def partition(self) -> None:
        self.open.clear()

    def heal(self) -> None:
        self.open.set()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        task.set_name("proxy-conn")
        self._tasks.add(task)
        self._writers.add(writer)
        up_w = None
        try:
            await self.open.wait()
            up_r, up_w = await asyncio.open_connection(HOST, self.target_port)
            self._writers.add(up_w)
            pipes = [asyncio.create_task(self._pipe(reader, up_w), name="proxy-pipe"),
                     asyncio.create_task(self._pipe(up_r, writer), name="proxy-pipe")]
            try:
                await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for p in pipes:
                    p.cancel()
                await asyncio.gather(*pipes, return_exceptions=True)
        except (OSError, asyncio.CancelledError):
            # Cancelled by ``close``: end quietly, asyncio's stream callback reads the
            # task's exception and would log a cancelled one as an error.
            pass
        finally:
            for w in (writer, up_w):
                if w is not None:
                    w.close()
                    self._writers.discard(w)
            self._tasks.discard(task)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while True:
                await self.open.wait()
                data = await reader.read(65536)
                if not data:
                    return
                await self.open.wait()
                writer.write(data)
                await writer.drain()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for w in list(self._writers):
            w.close()
        if self._server is not None:
            await self._server.wait_closed()
        await asyncio.sleep(0)


@pytest.fixture
def proxy(cluster: Cluster) -> Callable[[Node], Awaitable[Proxy]]:
    """Return a factory of started ``Proxy``s to a node (closed with the cluster)."""
    async def make(node: Node) -> Proxy:
        p = await Proxy(node.repl_port).start()
        cluster.closers.append(p.close)
        return p
    return make


def status_peer(status: dict[str, Any], node: Node) -> dict[str, Any] | None:
    """Return the status entry of ``node`` among a status's peers."""
    for p in status["peers"]:
        if p["node_id"] == node.node_id:
            return p
    return None

