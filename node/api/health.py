"""``GET /api/health/``: liveness and identity of this node, without auth."""

from __future__ import annotations

from aiohttp import web

from node.api.keys import NODE
from node.api.routing import RouteTable
from node.services import system

routes = RouteTable("system")


@routes.route("GET", "/api/health/", summary="Node health", response=system.Health, auth=False)
async def get_health(request: web.Request) -> web.Response:
    return web.json_response(system.health(request.app[NODE]).model_dump())
