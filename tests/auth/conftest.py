"""Fixtures of the account tests: real nodes on loopback and a client that checks answers.

Nodes are built with the real CLI and run as ``RunningNode``s in the test's
event loop (``tests.replication.conftest.Cluster``), listening on 127.0.0.1
with mDNS off. Every JSON answer any test receives through ``Api`` is checked
for secrets (password hashes, TOTP secrets), so that check covers the suite.
Argon2 costs ~0.15 s per hash: modules share one deployment (module scope) and
tests that change it use their own users.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from multidict import CIMultiDictProxy

from tests.replication.conftest import Cluster, Node, cli

PASSWORD = "Blue-Lantern-42"  # passes the password policy for every test username
CENTER_ROLES = ("center_admin", "invigilator", "evaluator", "candidate")
ROLES = ("admin", *CENTER_ROLES)
# Generous limits for the shared deployments: many sign-ins come from 127.0.0.1.
SHARED_AUTH = {"auth_rate": 100_000, "lockout_failures": 1000}

SECRET_KEYS = {"password_hash", "totp_secret", "totp_pending", "secret_key", "signing_key"}



def _secret_key(name: str) -> bool:
    return "password" in name.lower() or name in SECRET_KEYS


def assert_no_secrets(status: int, body: Any, *, top: bool = True,
                      path: str = "$") -> None:
    """Fail when ``body`` carries a password or TOTP secret (field errors aside)."""
    if isinstance(body, dict):
        for k, v in body.items():
            if _secret_key(str(k)):
                # A 400's field errors name the field: {"password": ["Too short."]}.
                is_field_error = (top and status == 400 and isinstance(v, list)
                                  and all(isinstance(m, str) for m in v))
                assert is_field_error, f"secret key {path}.{k} in a {status} answer: {body!r}"
            assert_no_secrets(status, v, top=False, path=f"{path}.{k}")
    elif isinstance(body, list):
        for i, v in enumerate(body):
            assert_no_secrets(status, v, top=False, path=f"{path}[{i}]")
    elif isinstance(body, str):
        assert "$argon2" not in body, f"password hash at {path}"


@dataclass
class Reply:
    status: int
    body: Any
    headers: CIMultiDictProxy[str]

    def __repr__(self) -> str:
        return f"<Reply {self.status} {self.body!r}>"


class Api:
    """An HTTP client of one node's API; every JSON answer is checked for secrets."""

    checked = 0  # answers checked, suite-wide (a sanity count)

    def __init__(self, http: aiohttp.ClientSession, base: str) -> None:
        self.http = http
        self.base = base

    async def request(self, method: str, path: str, *, token: str | None = None,
                      json_body: Any = None, headers: dict[str, str] | None = None) -> Reply:
        hdrs = dict(headers or {})
        if token is not None:
            hdrs["Authorization"] = f"Bearer {token}"
        async with self.http.request(method, self.base + path, json=json_body,
                                     headers=hdrs) as resp:
            raw = await resp.read()
            body: Any = None
            if raw:
                assert resp.content_type == "application/json", (resp.status, raw[:200])
                body = json.loads(raw)
                assert_no_secrets(resp.status, body)
                Api.checked += 1
            return Reply(resp.status, body, resp.headers)

    async def raw(self, method: str, path: str, token: str | None, *, data: bytes | None = None,
                  headers: dict[str, str] | None = None) -> Reply:
        """Send raw bytes; a JSON answer is parsed (and checked for secrets), others kept."""
        hdrs = dict(headers or {})
        if token is not None:
            hdrs["Authorization"] = f"Bearer {token}"
        async with self.http.request(method, self.base + path, data=data,
                                     headers=hdrs) as resp:
            raw = await resp.read()
            body: Any = raw
            if raw and resp.content_type == "application/json":
                body = json.loads(raw)
                assert_no_secrets(resp.status, body)
            return Reply(resp.status, body, resp.headers)

    async def get(self, path: str, token: str | None = None, **kw: Any) -> Reply:
        return await self.request("GET", path, token=token, **kw)

    async def post(self, path: str, body: Any = None, token: str | None = None,
                   **kw: Any) -> Reply:
        return await self.request("POST", path, token=token, json_body=body, **kw)

    async def patch(self, path: str, body: Any, token: str | None = None) -> Reply:
        return await self.request("PATCH", path, token=token, json_body=body)

    async def put(self, path: str, body: Any, token: str | None = None) -> Reply:
        return await self.request("PUT", path, token=token, json_body=body)

    async def delete(self, path: str, token: str | None = None) -> Reply:
        return await self.request("DELETE", path, token=token)

    async def login(self, username: str, password: str = PASSWORD,
                    otp: str | None = None) -> Reply:
        body = {"username": username, "password": password}
        if otp is not None:
            body["otp"] = otp
        return await self.post("/api/auth/login/", body)

    async def tokens(self, username: str, password: str = PASSWORD) -> tuple[str, str]:
        """Sign in and return (access, refresh)."""
        r = await self.login(username, password)
        assert r.status == 200, r
        return r.body["access"], r.body["refresh"]

    async def register(self, token: str, username: str, role: str, center: str | None,
                       password: str = PASSWORD, **extra: Any) -> Reply:
        body = {"username": username, "password": password, "role": role, "center": center,
                **extra}
        return await self.post("/api/auth/register/", body, token)

    async def page_all(self, path: str, token: str) -> list[Any]:
        """Return every item of a paginated list."""
        sep = "&" if "?" in path else "?"
        r = await self.get(f"{path}{sep}page_size=500", token)
        assert r.status == 200, r
        assert r.body["next"] is None, "more than one page"
        items: list[Any] = r.body["results"]
        return items


@dataclass
class User:
    username: str
    role: str
    center: str | None
    password: str = PASSWORD
    access: str = ""
    refresh: str = ""


@dataclass
class Deployment:
    """A running node with an admin, centres and users (HQ or a centre's first node)."""

    cluster: Cluster
    node: Node
    api: Api
    admin: User
    users: dict[str, User] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)  # what a test module adds

    def user(self, role: str, center: str | None = "A") -> User:
        """Return the shared user of ``role`` in ``center`` (the admin for ``admin``)."""
        return self.admin if role == "admin" else self.users[name_of(role, center)]

    async def add_user(self, username: str, role: str, center: str | None, *,
                       login: bool = False, password: str = PASSWORD) -> User:
        """Register a user as the admin (and sign it in when ``login``)."""
        r = await self.api.register(self.admin.access, username, role, center, password)
        assert r.status == 201, r
        user = User(username, role, center, password)
        if login:
            user.access, user.refresh = await self.api.tokens(username, password)
        self.users[username] = user
        return user


def record(node: Node, key: str) -> dict[str, Any]:
    """Return the data of a record that must exist on ``node``."""
    view = node.store.get(key)
    assert view is not None, f"{key} is not on {node}"
    return view.data


def name_of(role: str, center: str | None) -> str:
    """Return the username of a shared test user."""
    return f"{role}_{(center or 'global').lower()}"


async def create_superuser(data: Path, username: str) -> str:
    """Run ``examnode createsuperuser --generate`` and return the printed password."""
    result = await cli("createsuperuser", "--data", data, "--username", username, "--generate")
    assert result.code == 0, result.err
    m = re.search(r"password: (\S+)", result.out)
    assert m, result.out
    return m.group(1)


async def start_deployment(cluster: Cluster, *, hq: bool = True,
                           centers: tuple[str, ...] = ("A", "B"),
                           users_in: tuple[str, ...] = ("A", "B"),
                           login_in: tuple[str, ...] = ("A",),
                           auth: dict[str, Any] | None = None) -> Deployment:
    """Start a deployment: an HQ (or a standalone centre A) with centres and users.

    Every role gets one user per centre of ``users_in``, named by ``name_of``;
    the users of ``login_in`` are signed in.
    """
    config = {"auth": {**SHARED_AUTH, **(auth or {})}}
    if hq:
        node = await cluster.init("hq", hq=True, config=config)
    else:
        node = await cluster.init("a1", center="A", config=config)
    password = await create_superuser(node.data, "root")
    await node.start()
    api = Api(cluster.http, node.api)
    admin = User("root", "admin", None, password)
    admin.access, admin.refresh = await api.tokens("root", password)
    dep = Deployment(cluster, node, api, admin)
    for code in centers:
        if not hq and code == "A":
            continue  # createsuperuser made the standalone node's own centre
        r = await api.post("/api/auth/centers/", {"code": code, "name": f"Centre {code}",
                                                  "city": f"City {code}"}, admin.access)
        assert r.status == 201, r
    for code in users_in:
        for role in CENTER_ROLES:
            await dep.add_user(name_of(role, code), role, code, login=code in login_in)
    return dep


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def hq(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Deployment]:
    """An HQ with centres A and B, one user of every role in each; A's users signed in."""
    cluster = Cluster(tmp_path_factory.mktemp("hq"))
    try:
        yield await start_deployment(cluster)
    finally:
        await cluster.close()


@pytest_asyncio.fixture(loop_scope="module")
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    """A ``Cluster`` of this test only (in the module's event loop, as the tests here run);
    everything it started is stopped afterwards."""
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        await c.close()


def jwt_parts(token: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    """Return the (header, payload, signature) of a JWT without verifying it."""
    h, p, s = token.split(".")
    return json.loads(b64d(h)), json.loads(b64d(p)), s


def b64d(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
