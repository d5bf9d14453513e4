"""Cluster endpoints: joining a new machine, and replication status.

``POST /api/cluster/join/`` needs no account: the request proves it holds a
join token by an HMAC over the joiner's key (``node.services.invites``).
``GET /api/replication/status/`` is for admins; until accounts exist
(issue 4) it answers only requests from this machine (loopback).
"""

from __future__ import annotations

import asyncio
import ipaddress

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from node.api.keys import NODE
from node.api.parse import parse_json
from node.api.routing import RouteTable
from node.errors import PayloadTooLarge, Unavailable
from node.services import invites
from node.trust.certs import der

routes = RouteTable("cluster")

HEX32 = r"^[0-9a-f]{32}$"
HEX64 = r"^[0-9a-f]{64}$"


class JoinRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    token_id: str = Field(pattern=HEX32, description="Token id, hex.")
    public_key: str = Field(pattern=HEX64, description="The joining node's Ed25519 key, hex.")
    mac: str = Field(pattern=HEX64, description="HMAC-SHA256 proof of the token, hex.")
    name: str = Field("", max_length=100, description="Human name of the joining machine.")


class JoinResponse(BaseModel):
    chain: list[str] = Field(description="The new node's certificate chain, PEM, leaf first.")
    authority: str = Field(description="The deployment's authority certificate, PEM.")
    center: str
    peers: list[str] = Field(description="Replication addresses (host:port) to dial.")


@routes.route("POST", "/api/cluster/join/", summary="Join this centre with a token",
              body=JoinRequest, response=JoinResponse, status=201, auth=False,
              errors=[403, 409, 429])
async def join(request: web.Request) -> web.Response:
    from node.api.authn import limit_auth

    limit_auth(request)
    body = await parse_json(request, JoinRequest)
    ctx = request.app[NODE]
    if ctx.trust is None or ctx.replicator is None:
        raise Unavailable("this node does not replicate; it cannot admit machines")
    chain = invites.redeem_invite(ctx.data_dir, ctx.trust, bytes.fromhex(body.token_id),
                                  bytes.fromhex(body.public_key), bytes.fromhex(body.mac))
    # The inviter knows its new node at once (bundles can be encrypted to it, say).
    await ctx.replicator.policy.admit([[der(c) for c in chain]])
    peers = [f"{ctx.config.http.host}:{ctx.replicator.port}"]
    return web.json_response(invites.join_response(ctx.trust, chain, peers), status=201)


def _local_only(request: web.Request) -> None:
    """Allow this machine's operator (loopback, as the CLI does) or a signed-in admin."""
    try:
        local = ipaddress.ip_address(request.remote or "").is_loopback
    except ValueError:
        local = False
    if local and "Authorization" not in request.headers:
        return
    from node.api.authn import principal
    from node.services.auth.permissions import check

    check(principal(request), "system.status")


@routes.route("GET", "/api/replication/status/", summary="Replication status of this node",
              errors=[403])
async def replication_status(request: web.Request) -> web.Response:
    _local_only(request)
    ctx = request.app[NODE]
    if ctx.replicator is None:
        raise Unavailable("replication is not running on this node")
    return web.json_response(ctx.replicator.status(), dumps=_dumps)


MAX_BUNDLE = 2 * 1024**3


@routes.route("POST", "/api/replication/import/", summary="Apply a bundle file",
              errors=[400, 403, 413])
async def import_bundle(request: web.Request) -> web.Response:
    _local_only(request)
    ctx = request.app[NODE]
    rep = ctx.replicator
    if rep is None or ctx.trust is None:
        raise Unavailable("replication is not running on this node")
    if (request.content_length or 0) > MAX_BUNDLE:
        raise PayloadTooLarge("bundle too large")
    chunks, size = [], 0
    async for chunk in request.content.iter_chunked(1 << 20):
        size += len(chunk)
        if size > MAX_BUNDLE:
            raise PayloadTooLarge("bundle too large")
        chunks.append(chunk)
    from node.replication.bundle import import_bundle as apply

    report = await asyncio.to_thread(apply, ctx.store, rep.policy, ctx.identity, ctx.trust.me,
                                     b"".join(chunks))
    return web.json_response({**vars(report), "skipped_scopes": sorted(report.skipped_scopes)})


def _dumps(obj: object) -> str:
    import json

    def default(o: object) -> object:
        if isinstance(o, bytes):
            return o.hex()
        raise TypeError(type(o).__name__)

    return json.dumps(obj, default=default)
