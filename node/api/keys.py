"""Typed application state shared by the API modules (aiohttp ``AppKey``)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from node.services.system import NodeContext

NODE: web.AppKey[NodeContext] = web.AppKey("node", NodeContext)
SCHEMA: web.AppKey[dict[str, Any]] = web.AppKey("schema", dict)
