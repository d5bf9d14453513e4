"""The aiohttp application: middlewares, routes, and the store's lifecycle.

Each long-lived subsystem is one ``cleanup_ctx`` entry that pairs its start
and its stop (CONVENTIONS.md, aiohttp model): the store opens when the app
starts and closes, after in-flight requests finished, when it stops.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from aiohttp import web

from node import __version__
from node.api import auth, candidates, cluster, docs, health
from node.api.authn import LIMITER, RateLimiter
from node.api.errors import MAX_BODY, Handler, error_middleware
from node.api.keys import NODE, SCHEMA
from node.api.routing import RouteTable, openapi, register
from node.services.system import NodeContext

log = logging.getLogger(__name__)

KIOSK_DIR = Path(__file__).resolve().parent.parent.parent / "kiosk"
ROUTE_TABLES: list[RouteTable] = [health.routes, docs.routes, auth.routes, candidates.routes,
                                  cluster.routes]

API_CSP = "default-src 'none'; frame-ancestors 'none'"
PAGE_CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
            "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; "
            "base-uri 'self'; form-action 'self'")


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Add security headers; API answers are never cached."""
    resp = await handler(request)
    h = resp.headers
    h.setdefault("X-Content-Type-Options", "nosniff")
    h.setdefault("X-Frame-Options", "DENY")
    h.setdefault("Referrer-Policy", "no-referrer")
    h.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    if request.path.startswith("/api/") and not request.path.startswith("/api/docs"):
        h.setdefault("Cache-Control", "no-store")
        h.setdefault("Content-Security-Policy", API_CSP)
    else:
        h.setdefault("Content-Security-Policy", PAGE_CSP)
    return resp


def _cors_middleware(origins: list[str]) -> web.middleware:  # type: ignore[valid-type]
    allowed = set(origins)

    @web.middleware
    async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if origin in allowed and request.method == "OPTIONS":
            resp: web.StreamResponse = web.Response(status=204)
        else:
            resp = await handler(request)
        if origin in allowed:
            resp.headers["Access-Control-Allow-Origin"] = origin
            resp.headers["Vary"] = "Origin"
            resp.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type"
            resp.headers["Access-Control-Allow-Methods"] = "GET, POST, PUT, PATCH, DELETE"
        return resp

    return cors


async def _store_ctx(app: web.Application) -> AsyncIterator[None]:
    """Open the store with the app; close it after the last request."""
    store = app[NODE].store
    await asyncio.to_thread(store.open)
    try:
        yield
    finally:
        await asyncio.to_thread(store.close)


async def _index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(KIOSK_DIR / "index.html")


def build_app(ctx: NodeContext, *, extra_tables: list[RouteTable] | None = None,
              manage_store: bool = True,
              subsystems: list[Callable[[web.Application], AsyncIterator[None]]] | None = None,
              ) -> web.Application:
    """Return the node's web application."""
    cfg = ctx.config.http
    middlewares = [security_headers, error_middleware]
    if cfg.cors_origins:
        middlewares.insert(0, _cors_middleware(cfg.cors_origins))
    app = web.Application(client_max_size=cfg.max_body_bytes, middlewares=middlewares)
    app[NODE] = ctx
    app[MAX_BODY] = cfg.max_body_bytes
    app[LIMITER] = RateLimiter()
    endpoints = register(app, [*ROUTE_TABLES, *(extra_tables or [])])
    app[SCHEMA] = openapi(endpoints, title="Examnode", version=__version__)
    docs.add_static(app)
    app.router.add_get("/", _index)
    app.router.add_static("/kiosk", KIOSK_DIR, show_index=False)
    if manage_store:
        app.cleanup_ctx.append(_store_ctx)
    # Started in order after the store, stopped in reverse before it.
    app.cleanup_ctx.extend(subsystems or [])
    return app
