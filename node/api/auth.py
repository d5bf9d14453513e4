"""Authentication and account endpoints (paths as the original spec, DRF style).

Handlers are thin: parse, call one service, answer JSON. Permissions are
decided in ``node.services.auth.permissions`` only.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from node.api.authn import client, limit_auth, limit_write, principal
from node.api.keys import NODE
from node.api.pagination import paginate
from node.api.parse import parse_json, parse_query
from node.api.routing import RouteTable
from node.services.auth import AuthServices
from node.services.auth.audit import AuditQuery, audit
from node.services.auth.models import (
    CenterCreate,
    CenterOut,
    CenterPut,
    CenterUpdate,
    ForceLogoutIn,
    LoginIn,
    LoginOut,
    OtpIn,
    RefreshIn,
    RefreshOut,
    UserCreate,
    UserOut,
    UserPut,
    UserUpdate,
)
from node.services.auth.permissions import check
from node.services.system import system_status

routes = RouteTable("auth")


def _auth(request: web.Request) -> AuthServices:
    services: AuthServices | None = request.app[NODE].auth
    if services is None:
        from node.errors import Unavailable

        raise Unavailable("accounts are not available on this node")
    return services


def _page(request: web.Request, items: list[Any]) -> web.Response:
    cfg = request.app[NODE].config.http
    return web.json_response(paginate(request, items, cfg.page_size, cfg.max_page_size))


class Message(BaseModel):
    detail: str


# --- sign in ------------------------------------------------------------------------------

@routes.route("POST", "/api/auth/login/", summary="Sign in", body=LoginIn, response=LoginOut,
              auth=False, errors=[401, 403, 429])
async def login(request: web.Request) -> web.Response:
    limit_auth(request)
    body = await parse_json(request, LoginIn)
    out = await _auth(request).signin.login(body.username, body.password, body.otp,
                                            client(request))
    return web.json_response(out)


@routes.route("POST", "/api/auth/refresh/", summary="Rotate a refresh token", body=RefreshIn,
              response=RefreshOut, auth=False, errors=[401, 429])
async def refresh(request: web.Request) -> web.Response:
    limit_auth(request)
    body = await parse_json(request, RefreshIn)
    return web.json_response(await _auth(request).signin.refresh(body.refresh))


@routes.route("POST", "/api/auth/logout/", summary="Sign out (end the session)",
              body=RefreshIn, response=Message, auth=False, errors=[401])
async def logout(request: web.Request) -> web.Response:
    body = await parse_json(request, RefreshIn)
    await _auth(request).signin.logout(body.refresh)
    return web.json_response({"detail": "Signed out."})


@routes.route("POST", "/api/auth/register/", summary="Create a user", body=UserCreate,
              response=UserOut, status=201, errors=[403, 409])
async def register(request: web.Request) -> web.Response:
    who = principal(request)
    limit_write(request, who)
    body = await parse_json(request, UserCreate)
    return web.json_response(await _auth(request).accounts.create_user(who, body), status=201)


# --- users --------------------------------------------------------------------------------

@routes.route("GET", "/api/auth/users/", summary="List users", response=UserOut, paginated=True,
              errors=[403])
async def list_users(request: web.Request) -> web.Response:
    who = principal(request)
    auth = _auth(request)
    return _page(request, auth.accounts.list_users(
        who, dict(request.query), lambda u: bool(auth.signin.locked_until(u, None))))


@routes.route("GET", "/api/auth/users/{id}/", summary="User details", response=UserOut,
              errors=[403, 404])
async def get_user(request: web.Request) -> web.Response:
    who = principal(request)
    auth = _auth(request)
    username = request.match_info["id"]
    locked = bool(auth.signin.locked_until(username, None))
    return web.json_response(auth.accounts.read_user(who, username, locked))


async def _update(request: web.Request, model: type[UserPut] | type[UserUpdate]) -> web.Response:
    who = principal(request)
    limit_write(request, who)
    body = await parse_json(request, model)
    auth = _auth(request)
    username = request.match_info["id"]
    out = await auth.accounts.update_user(who, username, body)
    if body.password is not None:
        # A new password ends the user's other sessions (a stolen token stops working).
        keep = who.session_id if who.username == username else None
        await auth.signin.end_sessions(username, keep=keep, reason="password changed")
    return web.json_response(out)


@routes.route("PUT", "/api/auth/users/{id}/", summary="Replace a user", body=UserPut,
              response=UserOut, errors=[403, 404])
async def put_user(request: web.Request) -> web.Response:
    return await _update(request, UserPut)


@routes.route("PATCH", "/api/auth/users/{id}/", summary="Change a user", body=UserUpdate,
              response=UserOut, errors=[403, 404])
async def patch_user(request: web.Request) -> web.Response:
    return await _update(request, UserUpdate)


@routes.route("DELETE", "/api/auth/users/{id}/", summary="Delete a user", status=204,
              errors=[403, 404])
async def delete_user(request: web.Request) -> web.Response:
    who = principal(request)
    limit_write(request, who)
    await _auth(request).accounts.delete_user(who, request.match_info["id"])
    return web.Response(status=204)


@routes.route("POST", "/api/auth/users/{id}/unlock/", summary="Unlock a locked account",
              response=UserOut, errors=[403, 404])
async def unlock_user(request: web.Request) -> web.Response:
    who = principal(request)
    limit_write(request, who)
    return web.json_response(await _auth(request).signin.unlock(who, request.match_info["id"]))


# --- centres ------------------------------------------------------------------------------

@routes.route("GET", "/api/auth/centers/", summary="List centres", response=CenterOut,
              paginated=True, errors=[403])
async def list_centers(request: web.Request) -> web.Response:
    who = principal(request)
    return _page(request, _auth(request).accounts.list_centers(who, dict(request.query)))


@routes.route("POST", "/api/auth/centers/", summary="Create a centre", body=CenterCreate,
              response=CenterOut, status=201, errors=[403, 409])
async def create_center(request: web.Request) -> web.Response:
    who = principal(request)
    limit_write(request, who)
    body = await parse_json(request, CenterCreate)
    return web.json_response(await _auth(request).accounts.create_center(who, body), status=201)


@routes.route("GET", "/api/auth/centers/{id}/", summary="Centre details", response=CenterOut,
              errors=[403, 404])
async def get_center(request: web.Request) -> web.Response:
    who = principal(request)
    return web.json_response(_auth(request).accounts.read_center(who, request.match_info["id"]))


async def _update_center(request: web.Request,
                         model: type[CenterPut] | type[CenterUpdate]) -> web.Response:
    who = principal(request)
    limit_write(request, who)
    body = await parse_json(request, model)
    out = await _auth(request).accounts.update_center(who, request.match_info["id"], body)
    return web.json_response(out)


@routes.route("PUT", "/api/auth/centers/{id}/", summary="Replace a centre", body=CenterPut,
              response=CenterOut, errors=[403, 404])
async def put_center(request: web.Request) -> web.Response:
    return await _update_center(request, CenterPut)


@routes.route("PATCH", "/api/auth/centers/{id}/", summary="Change a centre", body=CenterUpdate,
              response=CenterOut, errors=[403, 404])
async def patch_center(request: web.Request) -> web.Response:
    return await _update_center(request, CenterUpdate)


# --- security and monitoring -------------------------------------------------------------

@routes.route("GET", "/api/auth/sessions/", summary="Sign-in sessions", paginated=True,
              errors=[403])
async def list_sessions(request: web.Request) -> web.Response:
    who = principal(request)
    return _page(request, _auth(request).signin.sessions(who))


@routes.route("GET", "/api/auth/login-attempts/", summary="Sign-in attempts", paginated=True,
              errors=[403])
async def list_attempts(request: web.Request) -> web.Response:
    who = principal(request)
    return _page(request, _auth(request).signin.attempts(who))


@routes.route("POST", "/api/auth/force-logout/", summary="End a user's sessions",
              body=ForceLogoutIn, errors=[403, 404])
async def force_logout(request: web.Request) -> web.Response:
    who = principal(request)
    limit_write(request, who)
    body = await parse_json(request, ForceLogoutIn)
    ended = await _auth(request).signin.force_logout(who, body.username, body.session_id,
                                                     body.reason)
    return web.json_response({"detail": f"Ended {ended} session(s).", "ended": ended})


@routes.route("GET", "/api/auth/system-status/", summary="Node, peers, store and warnings",
              errors=[403])
async def get_system_status(request: web.Request) -> web.Response:
    check(principal(request), "system.status")
    from node.api.cluster import _dumps

    return web.json_response(system_status(request.app[NODE]), dumps=_dumps)


class TotpSetupIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    otp: str | None = Field(None, pattern=r"^[0-9]{6}$",
                            description="A current code, when replacing an enrolled factor.")


@routes.route("POST", "/api/auth/totp/setup/", summary="Start enrolling a TOTP second factor",
              body=TotpSetupIn, errors=[403])
async def totp_setup(request: web.Request) -> web.Response:
    who = principal(request)
    body = await parse_json(request, TotpSetupIn)
    return web.json_response(await _auth(request).signin.totp_setup(who, body.otp))


@routes.route("POST", "/api/auth/totp/confirm/", summary="Confirm the TOTP second factor",
              body=OtpIn, response=Message, errors=[403])
async def totp_confirm(request: web.Request) -> web.Response:
    who = principal(request)
    body = await parse_json(request, OtpIn)
    await _auth(request).signin.totp_confirm(who, body.otp)
    return web.json_response({"detail": "Second factor enabled."})


@routes.route("GET", "/api/audit/", summary="Audit log from the signed delta log",
              query=AuditQuery, paginated=True, errors=[403])
async def get_audit(request: web.Request) -> web.Response:
    who = principal(request)
    query = parse_query(request, AuditQuery)
    return _page(request, audit(request.app[NODE].store, who, query))
