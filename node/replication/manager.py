"""The replicator: the TLS peer listener, dialers with backoff, and live sessions.

``start`` opens the listener and dials the static peers; discovery calls
``suggest`` with what it hears. One session per peer node: when two come up
at once (both ends dialled), both ends keep the one dialled by the smaller
node id. The store's change feed wakes every session's pump.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from node.config import NodeConfig, ReplicationSection
from node.identity import Identity
from node.replication.session import PeerSession
from node.replication.tls import client_context, server_context
from node.replication.wire import MAX_MESSAGE
from node.store import Store
from node.trust.certs import NodeCert
from node.trust.material import TrustMaterial
from node.trust.policy import REVOCATIONS, TrustPolicy

log = logging.getLogger(__name__)

PATH = "/replicate"


def normalize_address(text: str) -> str:
    """Return ``host:port`` from ``host:port`` or ``https://host:port[/...]``."""
    text = text.strip()
    if "://" in text:
        text = text.split("://", 1)[1]
    return text.split("/", 1)[0]


class Replicator:
    """See the module docstring."""

    def __init__(self, *, data_dir: Path, config: NodeConfig, identity: Identity, store: Store,
                 trust: TrustMaterial, policy: TrustPolicy) -> None:
        self.data_dir = data_dir
        self.config = config
        self.cfg: ReplicationSection = config.replication
        self.identity = identity
        self.store = store
        self.trust = trust
        self.policy = policy
        self.me: NodeCert = trust.me
        self.chain_der = trust.chain_der
        self.sessions: dict[str, PeerSession] = {}
        self.missing_blobs: set[str] = set()
        self._gone: dict[str, asyncio.Event] = {}
        self._pending: set[PeerSession] = set()
        self._dialers: dict[str, asyncio.Task[None]] = {}
        self._dial_state: dict[str, str] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._runner: web.AppRunner | None = None
        self._client: aiohttp.ClientSession | None = None
        self._client_ssl: ssl.SSLContext | None = None
        self.port = 0
        self._running = False

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the peer listener, follow the store feed, dial the static peers."""
        self._running = True
        app = web.Application()
        app.router.add_get(PATH, self._accept)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.http.host, self.cfg.port,
                           ssl_context=server_context(self.identity, self.trust, self.data_dir),
                           reuse_address=True)
        await site.start()
        server: Any = site._server
        self.port = int(server.sockets[0].getsockname()[1])
        self._client_ssl = client_context(self.identity, self.trust, self.data_dir)
        self._client = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, connect=5, sock_connect=5))
        self._spawn(self._follow_feed(), "repl-feed")
        self.missing_blobs |= await asyncio.to_thread(self.store.missing_blobs)
        for peer in self.config.discovery.peers:
            self.suggest(peer)
        log.info("replication listening on %s:%d", self.config.http.host, self.port)

    async def stop(self) -> None:
        """Close every session and dialer, then the listener."""
        self._running = False
        for task in list(self._dialers.values()) + list(self._tasks):
            task.cancel()
        for session in list(self.sessions.values()) + list(self._pending):
            await session.close()
        await asyncio.gather(*self._dialers.values(), *self._tasks, return_exceptions=True)
        self._dialers.clear()
        self._tasks.clear()
        if self._client is not None:
            await self._client.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- peers -----------------------------------------------------------------------------

    def suggest(self, address: str, node_id: str | None = None) -> None:
        """Dial ``address`` (``host:port`` or URL) and keep a session with it."""
        addr = normalize_address(address)
        if not self._running or addr in self._dialers:
            return
        if node_id is not None and (node_id in self.sessions or node_id == self.me.node_id):
            return
        self._dialers[addr] = asyncio.create_task(self._dial_loop(addr), name=f"repl-dial-{addr}")

    async def _dial_loop(self, addr: str) -> None:
        delay = 0.2
        while self._running:
            self._dial_state[addr] = "connecting"
            try:
                assert self._client is not None
                assert self._client_ssl is not None
                async with self._client.ws_connect(
                    f"https://{addr}{PATH}", ssl=self._client_ssl, max_msg_size=MAX_MESSAGE,
                    autoping=False, heartbeat=None,
                ) as ws:
                    conn = ws._response.connection
                    sslobj = conn.transport.get_extra_info("ssl_object") \
                        if conn is not None and conn.transport is not None else None
                    leaf = sslobj.getpeercert(binary_form=True) if sslobj else None
                    if not leaf:
                        raise ConnectionError("peer presented no certificate")
                    session = PeerSession(self, ws, tls_leaf=leaf, address=addr,
                                          direction="out", dialer_id=self.me.node_id)
                    self._dial_state[addr] = "connected"
                    self._pending.add(session)
                    try:
                        await session.run()
                    finally:
                        self._pending.discard(session)
                    delay = 0.2 if session.state.connected_at else delay
                    if session.duplicate:
                        # The peer is already connected (it dialled us): wait for that
                        # session to end instead of redialling every few seconds.
                        await self._until_gone(session)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.debug("dial %s failed: %s", addr, e)
            if not self._running:
                break
            self._dial_state[addr] = "backoff"
            await asyncio.sleep(delay * (0.5 + random.random()))  # noqa: S311 - jitter only
            delay = min(delay * 2, self.cfg.backoff_max)

    async def _until_gone(self, session: PeerSession) -> None:
        peer_id = session.peer.node_id if session.peer is not None else None
        gone = self._gone.get(peer_id) if peer_id is not None else None
        if gone is not None:
            await gone.wait()

    async def _accept(self, request: web.Request) -> web.StreamResponse:
        sslobj = request.transport.get_extra_info("ssl_object") if request.transport else None
        leaf = sslobj.getpeercert(binary_form=True) if sslobj else None
        if not leaf:
            raise web.HTTPForbidden(reason="a node certificate is required")
        ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE, autoping=False)
        await ws.prepare(request)
        peer = request.remote or "?"
        session = PeerSession(self, ws, tls_leaf=leaf, address=peer, direction="in",
                              dialer_id="")
        self._pending.add(session)
        try:
            await session.run()
        finally:
            self._pending.discard(session)
        return ws

    def register(self, session: PeerSession) -> bool:
        """Admit a session after its handshake; False means close it (a duplicate)."""
        assert session.peer is not None
        peer_id = session.peer.node_id
        if not session.dialer_id:
            session.dialer_id = peer_id
        old = self.sessions.get(peer_id)
        if old is not None:
            if session.dialer_id < old.dialer_id:
                self._spawn(old.close(), f"repl-replace-{peer_id[:7]}")
            else:
                return False
        self.sessions[peer_id] = session
        self._gone[peer_id] = asyncio.Event()
        self._spawn(self.policy.admit([list(session.peer.chain)]), f"repl-admit-{peer_id[:7]}")
        return True

    def unregister(self, session: PeerSession) -> None:
        """Forget a finished session."""
        if session.peer is not None and self.sessions.get(session.peer.node_id) is session:
            del self.sessions[session.peer.node_id]
            gone = self._gone.pop(session.peer.node_id, None)
            if gone is not None:
                gone.set()

    def receives(self, scope: str) -> bool:
        """Return True when this node holds ``scope`` (isolation, DESIGN.md s5)."""
        return self.me.role == "hq" or scope in ("global", self.me.center)

    def is_revoked(self, node_id: str) -> bool:
        """Return True when a revocation record names ``node_id``."""
        view = self.store.get(f"{REVOCATIONS}/{node_id}")
        return view is not None

    async def _follow_feed(self) -> None:
        async for event in self.store.subscribe():
            for session in list(self.sessions.values()):
                session.wake()
            if event.key.startswith(f"{REVOCATIONS}/"):
                node_id = event.key.split("/", 1)[1]
                revoked = self.sessions.get(node_id)
                if revoked is not None:
                    log.warning("dropping the session of revoked node %s", node_id)
                    await revoked.close()

    # --- status ----------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Return this node's replication status."""
        from node.identity import node_id_of

        vv = self.store.version_vector()
        return {
            "node_id": self.me.node_id, "center": self.me.center, "role": self.me.role,
            "port": self.port,
            "version_vector": [{"origin": node_id_of(o), "scope": s, "seq": n}
                               for (o, s), n in sorted(vv.items())],
            "peers": [vars(s.state).copy() for s in self.sessions.values()],
            "dialing": dict(self._dial_state),
            "quarantined": self.store.quarantined(),
        }
