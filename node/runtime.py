"""Running a node: load its data directory, serve until told to stop.

``examnode run`` calls ``serve``. SIGINT/SIGTERM stop accepting connections,
let in-flight requests finish (``http.shutdown_timeout``), then the store's
writer flushes and the environment closes.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from aiohttp import web

from node.api.app import build_app
from node.config import NodeConfig, load_config
from node.identity import Identity
from node.replication.lifecycle import replication_ctx
from node.runlock import RunLock
from node.services.auth import AuthServices
from node.services.candidates import CandidateServices
from node.services.system import NodeContext
from node.store import Store, StoreOptions
from node.trust.material import load_trust
from node.trust.policy import TrustPolicy

log = logging.getLogger(__name__)


def store_options(config: NodeConfig) -> StoreOptions:
    """Return the store tuning of a node configuration."""
    s = config.store
    return StoreOptions(map_size=s.map_size_mb * 1024 * 1024, max_batch=s.max_batch,
                        cache_size=s.cache_size, max_pending=s.max_pending)


def open_context(data_dir: Path, *, with_trust: bool = True) -> NodeContext:
    """Load config, identity and trust of ``data_dir`` (the store is not opened yet)."""
    config = load_config(data_dir)
    identity = Identity.load(data_dir)
    trust = load_trust(data_dir) if with_trust else None
    store = Store(data_dir, identity, store_options(config))
    ctx = NodeContext(data_dir, config, identity, store, trust)
    if trust is not None:
        ctx.policy = TrustPolicy(store, trust.root)
        ctx.auth = AuthServices.build(ctx)
        ctx.candidates = CandidateServices.build(ctx)
    return ctx


def open_offline(data_dir: Path) -> tuple[NodeContext, TrustPolicy]:
    """Open a node's store for a CLI command, with its trust policy installed."""
    ctx = open_context(data_dir)
    assert ctx.trust is not None
    ctx.store.open()
    try:
        policy: TrustPolicy = ctx.policy
        policy.install(ctx.trust.me.may_write)
        policy.admit_sync([ctx.trust.chain_der])
    except BaseException:
        ctx.store.close()
        raise
    return ctx, policy


CLEANUP_EVERY = 3600.0


def maintenance_ctx(ctx: NodeContext) -> Callable[[web.Application], AsyncIterator[None]]:
    """Return the cleanup context of the hourly housekeeping task (ended sessions)."""
    async def housekeeping() -> None:
        while True:
            await asyncio.sleep(CLEANUP_EVERY)
            try:
                removed = await ctx.auth.signin.cleanup()
                log.info("housekeeping removed %d ended sessions and old attempts", removed)
            except Exception:
                log.exception("housekeeping failed; trying again in an hour")

    async def run(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(housekeeping(), name="housekeeping") \
            if ctx.auth is not None else None
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            if ctx.candidates is not None:
                await ctx.candidates.importer.stop()

    return run


class RunningNode:
    """A started node: its web runner and site; ``stop`` undoes ``start``."""

    def __init__(self, ctx: NodeContext) -> None:
        self.ctx = ctx
        self.app = build_app(ctx, subsystems=[replication_ctx(ctx), maintenance_ctx(ctx)])
        cfg = ctx.config.http
        self.runner = web.AppRunner(
            self.app, access_log=logging.getLogger("examnode.access") if cfg.access_log else None,
            shutdown_timeout=cfg.shutdown_timeout, handle_signals=False,
        )
        self.url = f"http://{cfg.host}:{cfg.port}"
        self.lock = RunLock(ctx.data_dir)

    async def start(self) -> None:
        """Take the data directory's run lock, open the store and start listening."""
        self.lock.acquire()
        try:
            await self.runner.setup()
            cfg = self.ctx.config.http
            site = web.TCPSite(self.runner, cfg.host, cfg.port, reuse_address=True)
            await site.start()
        except BaseException:
            await self.runner.cleanup()
            self.lock.release()
            raise
        log.info("node %s (centre %s) serving on %s", self.ctx.node_id, self.ctx.center,
                 self.url)

    async def stop(self) -> None:
        """Finish in-flight requests, then close the store."""
        try:
            await self.runner.cleanup()
        finally:
            self.lock.release()
        log.info("node %s stopped", self.ctx.node_id)


async def serve(data_dir: Path, *, ready: asyncio.Event | None = None) -> None:
    """Serve the node in ``data_dir`` until SIGINT or SIGTERM."""
    node = RunningNode(open_context(data_dir))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await node.start()
    print(f"examnode {node.ctx.node_id} serving centre {node.ctx.center}", flush=True)
    print(f"  pages: {node.url}/", flush=True)
    print(f"  API:   {node.url}/api/  (docs: {node.url}/api/docs/)", flush=True)
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await node.stop()
