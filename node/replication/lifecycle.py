"""Starting and stopping replication with the web app (one ``cleanup_ctx``)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from node import __version__
from node.discovery import Discovery, PeerHint
from node.replication.manager import Replicator
from node.services.system import NodeContext
from node.trust.policy import NODES, TrustPolicy

log = logging.getLogger(__name__)

CleanupCtx = Callable[[web.Application], AsyncIterator[None]]


def replication_ctx(ctx: NodeContext) -> CleanupCtx:
    """Return the cleanup context that runs replication for ``ctx``."""
    async def run(app: web.Application) -> AsyncIterator[None]:
        async for _ in _replication(ctx):
            yield
    return run


async def _replication(ctx: NodeContext) -> AsyncIterator[None]:
    """Install the trust policy, record this node in the roster, run the replicator."""
    if ctx.trust is None:
        yield
        return
    policy: TrustPolicy = ctx.policy or TrustPolicy(ctx.store, ctx.trust.root)
    policy.install(ctx.trust.me.may_write)
    await policy.admit([ctx.trust.chain_der])
    me = ctx.trust.me
    scope = "global" if me.role == "hq" else me.center
    await ctx.store.put(f"{NODES}/{me.node_id}", {
        "node_id": me.node_id, "center": me.center, "role": me.role,
        "name": ctx.config.node.name, "chain": [c.hex() for c in ctx.trust.chain_der],
    }, scope=scope, user="")
    rep = Replicator(data_dir=ctx.data_dir, config=ctx.config, identity=ctx.identity,
                     store=ctx.store, trust=ctx.trust, policy=policy)
    await rep.start()
    ctx.replicator = rep
    discovery = await _start_discovery(ctx, rep)
    try:
        yield
    finally:
        if discovery is not None:
            await discovery.stop()
        ctx.replicator = None
        await rep.stop()


async def _start_discovery(ctx: NodeContext, rep: Replicator) -> Discovery | None:
    """Advertise and browse by mDNS when configured; a failure leaves static peers working."""
    cfg = ctx.config.discovery
    if not cfg.mdns or cfg.mdns_interface == "none":
        return None
    me = rep.me

    def on_peer(hint: PeerHint) -> None:
        # Only the smaller node id dials a discovered peer, so two nodes do not both dial;
        # trust is decided by the session's certificate check, never by the hint.
        if me.node_id < hint.node_id:
            rep.suggest(hint.address, hint.node_id)

    discovery = Discovery(node_id=me.node_id, center=me.center, role=me.role, port=rep.port,
                          api_port=ctx.config.http.port, version=__version__,
                          interface=cfg.mdns_interface, on_peer=on_peer)
    try:
        await discovery.start()
    except Exception as e:  # no multicast here: static peers still work
        log.warning("mDNS discovery unavailable on %s: %s", cfg.mdns_interface, e)
        await discovery.stop()
        return None
    return discovery
