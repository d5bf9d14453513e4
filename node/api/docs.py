"""``/api/schema/`` (OpenAPI 3.1) and ``/api/docs/`` (Swagger UI, no CDN).

Swagger UI's files come from the swagger-ui-py package installed with the
node, so the docs work in a hall with no internet.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

from aiohttp import web

from node.api.keys import SCHEMA
from node.api.routing import RouteTable

routes = RouteTable("system")

STATIC_PREFIX = "/api/docs/static"

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Examnode API</title>
<link rel="stylesheet" href="{static}/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="{static}/swagger-ui-bundle.js"></script>
<script src="/api/docs/init.js"></script></body></html>
"""

_INIT = """window.ui = SwaggerUIBundle({url: "/api/schema/", dom_id: "#swagger-ui",
  deepLinking: true, presets: [SwaggerUIBundle.presets.apis]});
"""


def swagger_static_dir() -> Path:
    """Return the folder of Swagger UI's files inside the installed package."""
    return Path(str(importlib.resources.files("swagger_ui") / "static"))


@routes.route("GET", "/api/schema/", summary="OpenAPI 3.1 document", auth=False)
async def get_schema(request: web.Request) -> web.Response:
    return web.json_response(request.app[SCHEMA])


@routes.route("GET", "/api/docs/", summary="Swagger UI", auth=False)
async def get_docs(request: web.Request) -> web.Response:
    return web.Response(text=_PAGE.format(static=STATIC_PREFIX), content_type="text/html")


@routes.route("GET", "/api/docs/init.js", summary="Swagger UI start-up script", auth=False)
async def get_docs_init(request: web.Request) -> web.Response:
    return web.Response(text=_INIT, content_type="application/javascript")


def add_static(app: web.Application) -> None:
    """Serve Swagger UI's files."""
    app.router.add_static(STATIC_PREFIX, swagger_static_dir(), show_index=False)
