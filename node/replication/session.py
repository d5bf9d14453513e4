"""One replication session with one peer, over one websocket.

Both ends run the same code: exchange ``hello`` (identity chain, version
vector), then each sends what the other lacks, oldest first per chain, and
keeps streaming what it commits or receives (gossip relay). At most
``window`` messages are unacknowledged (back-pressure); progress is durable
at the receiver, so a broken session resumes from the version vectors.
A peer silent for ``dead_after`` seconds is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web
from aiohttp.client_ws import ClientWebSocketResponse

from node import __version__
from node.replication.wire import ProtocolError, pack, unpack, vv_from_wire, vv_to_wire
from node.store.layout import blob_refs
from node.trust.certs import CertificateError, NodeCert

if TYPE_CHECKING:
    from node.replication.manager import Replicator

log = logging.getLogger(__name__)

WebSocket = web.WebSocketResponse | ClientWebSocketResponse
Chain = tuple[bytes, str]
WANT_BATCH = 100
PERMANENT = {"unknown_signer", "scope_not_allowed", "revoked", "scope", "malformed",
             "bad_signature", "corrupt"}


class SessionClosed(Exception):
    """The session ended (peer gone, refused, or replaced)."""


@dataclass
class PeerState:
    """What the status page shows of one peer session."""

    node_id: str = ""
    center: str = ""
    role: str = ""
    address: str = ""
    direction: str = ""
    state: str = "handshake"
    connected_at: float = 0.0
    last_seen: float = 0.0
    clock_offset_ms: float | None = None
    rtt_ms: float | None = None
    sent: int = 0
    received: int = 0
    behind_out: int = 0  # deltas we hold that the peer lacks
    behind_in: int = 0  # deltas the peer holds that we lack
    refused: dict[str, int] = field(default_factory=dict)
    blobs_received: int = 0
    wire_bytes_sent: int = 0  # chain messages, as encoded (before websocket/TLS framing)
    update_bytes_sent: int = 0  # the CRDT updates inside them


class PeerSession:
    """See the module docstring."""

    def __init__(self, rep: Replicator, ws: WebSocket, *, tls_leaf: bytes, address: str,
                 direction: str, dialer_id: str) -> None:
        self.rep = rep
        self.ws = ws
        self.tls_leaf = tls_leaf
        self.dialer_id = dialer_id
        self.peer: NodeCert | None = None
        self.state = PeerState(address=address, direction=direction)
        self._sent: dict[Chain, int] = {}
        self._acked: dict[Chain, int] = {}
        self._peer_vv: dict[Chain, int] = {}
        self._blocked: set[Chain] = set()
        self._certs_sent: set[bytes] = set()
        self._inflight = 0
        self._batch_no = 0
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._send_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._own_target: dict[Chain, int] = {}
        self._applying = False
        self.duplicate = False
        # Chain messages being applied, in arrival order; bounded like the sender's window.
        self._applies: asyncio.Queue[tuple[int, bytes, str, list[Any], Any]] = \
            asyncio.Queue(maxsize=64)

    # --- scopes (DESIGN.md s5, s7: isolation on the wire) ------------------------------

    def sends(self, scope: str) -> bool:
        """Return True when this peer may receive ``scope``."""
        assert self.peer is not None
        return self.peer.role == "hq" or scope in ("global", self.peer.center)

    def wake(self) -> None:
        """Tell the pump that new deltas are stored."""
        self._wake.set()

    async def close(self) -> None:
        """End the session."""
        for task in self._tasks:
            task.cancel()
        # A vanished peer never answers the close frame: do not wait long for it.
        # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation.
        with contextlib.suppress(Exception):
            async with asyncio.timeout(1.0):
                await self.ws.close()

    # --- the session -----------------------------------------------------------------------

    async def run(self) -> None:
        """Handshake, then replicate both ways until the peer goes or we stop."""
        rep = self.rep
        try:
            await self._send({"t": "hello", "id": rep.me.node_id, "center": rep.me.center,
                              "role": rep.me.role, "v": __version__, "chain": rep.chain_der,
                              "vv": vv_to_wire(rep.store.version_vector())})
            hello = await self._receive(rep.cfg.dead_after)
            self._accept_hello(hello)
        except (ProtocolError, CertificateError, SessionClosed, TimeoutError) as e:
            log.warning("peer %s refused in handshake: %s", self.state.address, e)
            await self.close()
            return
        assert self.peer is not None
        if not rep.register(self):
            self.duplicate = True
            await self.close()
            return
        self.state.state = "connected"
        self.state.connected_at = time.time()
        await self._check_recovered()
        log.info("peer session up: %s (%s, centre %s) at %s", self.peer.node_id,
                 self.state.direction, self.peer.center, self.state.address)
        name = self.peer.node_id[:7]
        self._tasks = [
            asyncio.create_task(self._reader(), name=f"repl-read-{name}"),
            asyncio.create_task(self._pump(), name=f"repl-pump-{name}"),
            asyncio.create_task(self._pinger(), name=f"repl-ping-{name}"),
            asyncio.create_task(self._acker(), name=f"repl-ack-{name}"),
        ]
        try:
            done, _ = await asyncio.wait(self._tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    exc = task.exception()
                    log.info("peer session %s ended: %s", self.peer.node_id, exc)
        finally:
            self.state.state = "closed"
            rep.unregister(self)  # first: a stuck task must never keep a dead peer registered
            await self.close()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5.0):
                    await asyncio.gather(*self._tasks, return_exceptions=True)
            log.info("peer session down: %s", self.peer.node_id)

    def _accept_hello(self, hello: dict[str, Any]) -> None:
        if hello.get("t") != "hello":
            raise ProtocolError("expected hello")
        chain = hello.get("chain")
        if not isinstance(chain, list) or not chain or not all(isinstance(c, bytes)
                                                              for c in chain):
            raise ProtocolError("hello without a certificate chain")
        if chain[0] != self.tls_leaf:
            raise CertificateError("hello chain does not match the TLS certificate")
        peer = self.rep.policy.verify(chain)
        if self.rep.is_revoked(peer.node_id):
            raise CertificateError(f"node {peer.node_id} is revoked")
        if peer.public_key == self.rep.me.public_key:
            raise ProtocolError("connected to myself")
        self.peer = peer
        self.state.node_id, self.state.center, self.state.role = \
            peer.node_id, peer.center, peer.role
        self._peer_vv = vv_from_wire(hello.get("vv"))
        me = self.rep.me.public_key
        self._own_target = {c: n for c, n in self._peer_vv.items() if c[0] == me}
        self._sent = dict(self._peer_vv)
        self._acked = dict(self._peer_vv)
        self.state.last_seen = time.time()

    async def _send(self, message: dict[str, Any]) -> None:
        async with self._send_lock:
            await self.ws.send_bytes(pack(message))

    async def _receive(self, wait: float) -> dict[str, Any]:
        msg = await self.ws.receive(timeout=wait)
        if msg.type == WSMsgType.BINARY:
            self.state.last_seen = time.time()
            return unpack(msg.data)
        if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
            raise SessionClosed(f"websocket {msg.type.name.lower()}")
        raise ProtocolError(f"unexpected websocket message {msg.type.name}")

    # --- sending ---------------------------------------------------------------------------

    async def _pump(self) -> None:
        rep, cfg = self.rep, self.rep.cfg
        while True:
            self._wake.clear()
            progressed = False
            vv = rep.store.version_vector()
            behind = 0
            for chain, mine in vv.items():
                if not self.sends(chain[1]) or chain in self._blocked:
                    continue
                behind += max(0, mine - self._acked.get(chain, 0))
                have = self._sent.get(chain, 0)
                if mine <= have:
                    continue
                await self._send_certs(chain[0])
                items = await asyncio.to_thread(rep.store.chain_items, chain[0], chain[1], have,
                                                cfg.batch)
                if not items:
                    continue
                while self._inflight >= cfg.window:
                    self._room.clear()
                    await self._room.wait()
                self._inflight += 1
                self._batch_no += 1
                frame = pack({"t": "chain", "n": self._batch_no, "o": chain[0],
                              "s": chain[1], "d": items})
                async with self._send_lock:
                    await self.ws.send_bytes(frame)
                self.state.wire_bytes_sent += len(frame)
                self.state.update_bytes_sent += sum(len(i[2]) for i in items)
                self._sent[chain] = items[-1][0]
                self.state.sent += len(items)
                progressed = True
            self.state.behind_out = behind
            if not progressed:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        await self._wake.wait()

    async def _send_certs(self, origin: bytes) -> None:
        assert self.peer is not None
        if origin in self._certs_sent or origin == self.peer.public_key:
            return
        self._certs_sent.add(origin)
        chain = self.rep.chain_der if origin == self.rep.me.public_key \
            else self.rep.policy.chain_of(origin)
        if chain:
            await self._send({"t": "certs", "chains": [chain]})

    async def _pinger(self) -> None:
        cfg = self.rep.cfg
        while True:
            await asyncio.sleep(cfg.heartbeat)
            if self._applying:
                self.state.last_seen = time.time()  # busy applying its deltas: it is alive
            if time.time() - self.state.last_seen > cfg.dead_after:
                raise SessionClosed(f"no word from the peer for {cfg.dead_after:.0f} s")
            if self.peer is not None and self.rep.is_revoked(self.peer.node_id):
                raise SessionClosed(f"node {self.peer.node_id} was revoked")
            await self._send({"t": "ping", "ts": time.time(),
                              "vv": vv_to_wire(self.rep.store.version_vector())})
            if self.rep.missing_blobs:
                await self._send({"t": "want", "h": sorted(self.rep.missing_blobs)[:WANT_BATCH]})

    # --- receiving -------------------------------------------------------------------------

    async def _reader(self) -> None:
        while True:
            msg = await self._receive(self.rep.cfg.dead_after * 2)
            kind = msg["t"]
            if kind == "chain":
                await self._on_chain(msg)
            elif kind == "ack":
                self._on_ack(msg)
            elif kind == "certs":
                chains = msg.get("chains")
                if not isinstance(chains, list):
                    raise ProtocolError("certs without chains")
                await self.rep.policy.admit([c for c in chains if isinstance(c, list)])
            elif kind == "ping":
                self._on_ping(msg)
                await self._send({"t": "pong", "ts": msg.get("ts"), "wall": time.time()})
            elif kind == "pong":
                self._on_pong(msg)
            elif kind == "want":
                await self._on_want(msg)
            elif kind == "blob":
                await self._on_blob(msg)
            else:
                raise ProtocolError(f"unexpected {kind} during the session")

    async def _on_chain(self, msg: dict[str, Any]) -> None:
        origin, scope, items, n = msg.get("o"), msg.get("s"), msg.get("d"), msg.get("n")
        if not (isinstance(origin, bytes) and isinstance(scope, str) and isinstance(items, list)
                and isinstance(n, int)):
            raise ProtocolError("malformed chain message")
        if not self.rep.receives(scope):
            # Isolation: a centre node never stores another centre's scope.
            log.warning("peer %s sent scope %s, which this node does not hold",
                        self.state.node_id, scope)
            await self._send({"t": "ack", "n": n, "o": origin, "s": scope, "head": 0,
                              "r": "scope"})
            return
        chain = (origin, scope)
        last = items[-1][0] if items and isinstance(items[-1], list) and items[-1] else 0
        if isinstance(last, int):
            # The peer holds what it sends: never echo it back (mark it before the apply
            # commits, or the pump, woken by the commit, would send it straight back).
            self._sent[chain] = max(self._sent.get(chain, 0), last)
            self._acked[chain] = max(self._acked.get(chain, 0), last)
        # Pipelined: queue the apply with the writer (which keeps the order) and read on;
        # the acker answers in order as applies finish, so messages that arrive together
        # share one durable commit and the reader never stalls behind the disk.
        fut = self.rep.store.apply_chain_nowait(origin, scope, items)
        await self._applies.put((n, origin, scope, items, fut))

    async def _acker(self) -> None:
        while True:
            n, origin, scope, items, fut = await self._applies.get()
            self._applying = True
            try:
                result = await fut
            finally:
                self._applying = not self._applies.empty()
                self.state.last_seen = time.time()
            self.state.received += result.applied
            if origin == self.rep.me.public_key:
                await self._check_recovered()
            if result.applied:
                await self._ask_blobs({i[1] for i in items if isinstance(i, list)
                                       and len(i) > 1 and isinstance(i[1], str)})
            if result.reason:
                self.state.refused[result.reason] = self.state.refused.get(result.reason, 0) + 1
            await self._send({"t": "ack", "n": n, "o": origin, "s": scope,
                              "head": result.head, "r": result.reason})

    async def _ask_blobs(self, keys: set[str]) -> None:
        """Ask this peer for blobs that the changed records reference and we lack."""
        store, missing = self.rep.store, self.rep.missing_blobs
        for key in keys:
            view = store.get(key)
            for digest in blob_refs(view.data) if view is not None else []:
                if not store.has_blob(digest):
                    missing.add(digest)
        if missing:
            await self._send({"t": "want", "h": sorted(missing)[:WANT_BATCH]})

    async def _on_want(self, msg: dict[str, Any]) -> None:
        wanted = msg.get("h")
        if not isinstance(wanted, list):
            raise ProtocolError("malformed want")
        store = self.rep.store
        for digest in wanted[:WANT_BATCH]:
            if not isinstance(digest, str) or not store.has_blob(digest):
                continue
            # A blob travels only to a peer that may hold a record referencing it.
            if not any(self.sends(v.scope) for v in store.blob_referrers(digest)):
                continue
            data = store.get_blob(digest)
            if data is not None:
                await self._send({"t": "blob", "h": digest, "b": data})

    async def _on_blob(self, msg: dict[str, Any]) -> None:
        digest, data = msg.get("h"), msg.get("b")
        if not isinstance(digest, str) or not isinstance(data, bytes):
            raise ProtocolError("malformed blob")
        if digest not in self.rep.missing_blobs:
            return  # not asked for: ignore rather than store unsolicited bytes
        if await self.rep.store.put_blob_verified(digest, data):
            self.rep.missing_blobs.discard(digest)
            self.state.blobs_received += 1
        else:
            log.warning("peer %s sent a blob whose hash does not match", self.state.node_id)

    async def _check_recovered(self) -> None:
        """Let a restored node write again once this peer gave back its own deltas."""
        store = self.rep.store
        if not store.restored:
            return
        vv = store.version_vector()
        if all(vv.get(c, 0) >= n for c, n in self._own_target.items()):
            log.info("restored node caught up its own chains from %s; writes resume",
                     self.state.node_id)
            await store.clear_restored()

    def _on_ack(self, msg: dict[str, Any]) -> None:
        self._inflight = max(0, self._inflight - 1)
        self._room.set()
        origin, scope, head, reason = msg.get("o"), msg.get("s"), msg.get("head"), msg.get("r")
        if not (isinstance(origin, bytes) and isinstance(scope, str) and isinstance(head, int)):
            raise ProtocolError("malformed ack")
        chain = (origin, scope)
        self._acked[chain] = max(self._acked.get(chain, 0), head)
        if reason in PERMANENT:
            log.warning("peer %s refused chain %s/%s (%s); not resending in this session",
                        self.state.node_id, origin.hex()[:12], scope, reason)
            self._blocked.add(chain)
        elif reason and head < self._sent.get(chain, 0):
            self._sent[chain] = head  # a gap: resend from the peer's head
            self._wake.set()

    def _on_ping(self, msg: dict[str, Any]) -> None:
        try:
            peer_vv = vv_from_wire(msg.get("vv"))
        except ProtocolError:
            return
        mine = self.rep.store.version_vector()
        self.state.behind_in = sum(max(0, n - mine.get(c, 0)) for c, n in peer_vv.items()
                                   if self.rep.receives(c[1]))

    def _on_pong(self, msg: dict[str, Any]) -> None:
        ts, wall = msg.get("ts"), msg.get("wall")
        if not isinstance(ts, float) or not isinstance(wall, float):
            return
        now = time.time()
        rtt = now - ts
        self.state.rtt_ms = round(rtt * 1000, 2)
        self.state.clock_offset_ms = round((wall - (ts + rtt / 2)) * 1000, 1)
