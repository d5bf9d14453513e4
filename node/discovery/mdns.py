"""mDNS discovery: advertise this node and report the peers seen on one interface.

DESIGN.md section 7. ``Discovery`` registers ``<node_id>._examnode._tcp.local.``
on a single IPv4 interface (loopback by default, NETWORK-TESTING.md) and browses
the same type. Browser callbacks are cheap and synchronous: they only start a
named task that resolves the service and turns it into a ``PeerHint`` (the Home
Assistant zeroconf pattern), so the event loop never waits on the network.

Discovery only *suggests* peers. It makes no trust decision: an advertisement
is unauthenticated, and the replication session verifies who a peer is.
Nodes that vanish without a goodbye are detected by that session too, not here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from functools import partial
from typing import Any

from zeroconf import Error as ZeroconfError
from zeroconf import IPVersion, ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from node.discovery.hints import (
    SERVICE_TYPE,
    PeerHint,
    check_hint,
    hint_from_info,
    instance_name,
)

log = logging.getLogger(__name__)

RESOLVE_TIMEOUT = 3.0  # seconds; zeroconf's own default for a service lookup


class Discovery:
    """Advertise this node by mDNS and report peers as hints; never decides trust.

    ``on_peer`` is called (from the event loop) when a peer appears or its
    advertisement changes; ``on_gone`` with the node id when a reported peer
    says goodbye. Both must be quick and must not raise. ``resolve_timeout``
    exists so tests can shorten the wait for a peer that never answers.
    """

    def __init__(
        self,
        *,
        node_id: str,
        center: str,
        role: str,
        port: int,
        api_port: int,
        version: str,
        interface: str = "127.0.0.1",
        on_peer: Callable[[PeerHint], None],
        on_gone: Callable[[str], None] | None = None,
        resolve_timeout: float = RESOLVE_TIMEOUT,
    ) -> None:
        self._own = PeerHint(node_id=node_id, center=center, role=role, host=interface,
                             port=port, api_port=api_port, version=version)
        # Refuse to advertise what peers would skip as malformed; this also
        # rejects an unspecified or multicast interface (never "all interfaces").
        check_hint(self._own)
        self._key = instance_name(node_id).lower()
        self._on_peer = on_peer
        self._on_gone = on_gone
        self._resolve_timeout = resolve_timeout
        self._aiozc: AsyncZeroconf | None = None
        self._info: AsyncServiceInfo | None = None
        self._announcing: asyncio.Future[Any] | None = None
        self._browser: AsyncServiceBrowser | None = None
        self._tasks: dict[str, asyncio.Task[None]] = {}  # resolve task by instance key
        self._peers: dict[str, PeerHint] = {}  # node id -> hint
        self._ids: dict[str, str] = {}  # instance key -> node id, for reported peers
        self._started = False
        self._stopped = False

    @property
    def advertised(self) -> PeerHint:
        """Return the hint this node advertises about itself."""
        return self._own

    @property
    def peers(self) -> dict[str, PeerHint]:
        """Return a copy of the current peers, by node id."""
        return dict(self._peers)

    async def start(self) -> None:
        """Register this node's service and start browsing for peers."""
        if self._started or self._stopped:
            raise RuntimeError("Discovery can be started only once")
        self._started = True
        own = self._own
        self._aiozc = AsyncZeroconf(interfaces=[own.host], ip_version=IPVersion.V4Only)
        try:
            self._info = AsyncServiceInfo(
                SERVICE_TYPE, instance_name(own.node_id), port=own.port,
                properties=own.txt(), server=f"{own.node_id}.local.",
                parsed_addresses=[own.host],
            )
            # Probes first: raises NonUniqueNameException if the id is taken.
            announced = await self._aiozc.async_register_service(self._info)
            self._announcing = asyncio.ensure_future(announced)
            self._browser = AsyncServiceBrowser(
                self._aiozc.zeroconf, SERVICE_TYPE, handlers=[self._on_state_change])
        except BaseException:
            self._info = None  # not registered: no goodbye to send
            await self.stop()
            raise
        log.info("mDNS: advertising %s (centre %s) on %s port %s", own.node_id, own.center,
                 own.host, own.port)

    async def stop(self) -> None:
        """Say goodbye, stop browsing, cancel owned tasks and close zeroconf; idempotent."""
        if self._stopped:
            return
        self._stopped = True
        if self._browser is not None:
            await self._browser.async_cancel()
            self._browser = None
        owned: list[asyncio.Future[Any]] = list(self._tasks.values())
        self._tasks.clear()
        if self._announcing is not None:
            owned.append(self._announcing)
            self._announcing = None
        for fut in owned:
            fut.cancel()
        await asyncio.gather(*owned, return_exceptions=True)
        aiozc, self._aiozc = self._aiozc, None
        info, self._info = self._info, None
        try:
            if aiozc is not None and info is not None:
                goodbye = await aiozc.async_unregister_service(info)
                await goodbye
        finally:
            if aiozc is not None:
                await aiozc.async_close()
            self._peers.clear()
            self._ids.clear()
        if info is not None:
            log.info("mDNS: stopped advertising %s", self._own.node_id)

    def _on_state_change(self, zeroconf: Zeroconf, service_type: str, name: str,
                         state_change: ServiceStateChange) -> None:
        """Handle a browser event; runs in the event loop, so it must not wait."""
        key = name.lower()
        if key == self._key or self._stopped:
            return
        self._cancel_resolve(key)
        if state_change is ServiceStateChange.Removed:
            node_id = self._ids.pop(key, None)
            if node_id is not None:
                self._peers.pop(node_id, None)
                log.info("mDNS: peer %s said goodbye", node_id)
                if self._on_gone is not None:
                    self._notify(self._on_gone, node_id)
            return
        # Added or Updated: the latest advertisement wins.
        task = asyncio.get_running_loop().create_task(
            self._resolve(zeroconf, service_type, name), name=f"examnode-mdns-resolve:{name}")
        self._tasks[key] = task
        task.add_done_callback(partial(self._resolve_done, key))

    async def _resolve(self, zeroconf: Zeroconf, service_type: str, name: str) -> None:
        """Resolve one advertised service and report it as a hint if it is well formed."""
        try:
            info = AsyncServiceInfo(service_type, name)
            found = await info.async_request(zeroconf, self._resolve_timeout * 1000)
        except ZeroconfError as e:
            log.debug("skipping mDNS peer %r: %r", name, e)
            return
        if not found:
            log.debug("skipping mDNS peer %r: no answer within %ss", name,
                      self._resolve_timeout)
            return
        hint = hint_from_info(info)
        if hint is None or hint.node_id == self._own.node_id:
            return
        if self._peers.get(hint.node_id) == hint:
            return  # an update that changed nothing we report
        self._peers[hint.node_id] = hint
        self._ids[name.lower()] = hint.node_id
        log.info("mDNS: peer %s (centre %s, %s) at %s port %s", hint.node_id, hint.center,
                 hint.role, hint.host, hint.port)
        self._notify(self._on_peer, hint)

    def _cancel_resolve(self, key: str) -> None:
        task = self._tasks.pop(key, None)
        if task is not None:
            task.cancel()

    def _resolve_done(self, key: str, task: asyncio.Task[None]) -> None:
        if self._tasks.get(key) is task:
            del self._tasks[key]
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("mDNS: resolving %s failed", key, exc_info=exc)

    @staticmethod
    def _notify(callback: Callable[[Any], None], arg: object) -> None:
        """Call a user callback; a bug there must not break zeroconf's dispatch."""
        try:
            callback(arg)
        except Exception:
            log.exception("mDNS: discovery callback %r failed", callback)
