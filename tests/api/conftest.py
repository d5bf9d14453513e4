"""A real node app on a loopback socket, over a real store in a temp dir."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import BaseModel, ConfigDict, Field

from node.api.app import build_app
from node.api.keys import NODE
from node.api.pagination import paginate
from node.api.parse import parse_json
from node.api.routing import RouteTable
from node.config import HttpSection, NodeConfig, NodeSection
from node.identity import Identity
from node.services.system import NodeContext
from node.store import Store

# A write endpoint used only by these tests, to prove that bad input changes nothing
# and that lists paginate; the real domain endpoints arrive with their issues.
probe = RouteTable("probe")


class ProbeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    roll_no: str = Field(pattern=r"^[0-9]{1,10}$")
    name: str = Field(min_length=1, max_length=100)
    age: int = Field(ge=10, le=120)


class ProbeOut(BaseModel):
    roll_no: str
    name: str
    age: int


@probe.route("POST", "/api/probe/", summary="Create a probe record", body=ProbeIn,
             response=ProbeOut, status=201)
async def create_probe(request: web.Request) -> web.Response:
    body = await parse_json(request, ProbeIn)
    store = request.app[NODE].store
    result = await store.put(f"probes/{body.roll_no}", body.model_dump(), scope="DEMO")
    return web.json_response(result.view, status=201)


@probe.route("GET", "/api/probe/", summary="List probe records", response=ProbeOut,
             paginated=True)
async def list_probes(request: web.Request) -> web.Response:
    store = request.app[NODE].store
    items = [v.data for v in store.scan("probes")]
    return web.json_response(paginate(request, items, 3, 5))


@probe.route("GET", "/api/probe/boom/", summary="Raise an unexpected error")
async def boom(request: web.Request) -> web.Response:
    raise RuntimeError("secret internal detail /etc/passwd")


def make_context(tmp_path: Path, **http: object) -> NodeContext:
    config = NodeConfig(node=NodeSection(center="DEMO", name="hall-1"),
                        http=HttpSection(**http))  # type: ignore[arg-type]
    identity = Identity.generate()
    return NodeContext(tmp_path, config, identity, Store(tmp_path, identity))


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    ctx = make_context(tmp_path, max_body_bytes=4096)
    app = build_app(ctx, extra_tables=[probe])
    async with TestClient(TestServer(app, host="127.0.0.1")) as c:
        yield c
