"""Accounts across the nodes of one centre: tokens, logout, forced logout, lockout, status.

Centre A's first node ``a1`` (which made the admin) and a joined node ``b``
run side by side and replicate; each test talks to both APIs. Sign-in
failures come from 127.0.0.2 so that the per-address lockout they cause
spares the other tests' sign-ins from 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from node.identity import Identity
from node.store import ApplyStatus
from node.store.delta import GENESIS, decode, encode, make_delta
from node.store.hlc import hlc_millis
from node.trust.policy import REVOCATIONS
from tests.auth.conftest import Api, Deployment, jwt_parts, record, start_deployment
from tests.replication.conftest import Cluster, Node, RawPeer, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="module")

FAILURES = 3  # [auth] lockout_failures of these nodes
AUTH = {"lockout_failures": FAILURES, "lockout_window": 60, "lockout_time": 60}
WITHIN = 2.0  # seconds a logout or lockout may take to reach the other node
_n = itertools.count()


@dataclass
class Pair:
    dep: Deployment
    a: Node
    b: Node
    courier: Node  # a certified node of A that never runs: its key signs by hand
    api_a: Api
    api_b: Api
    far_a: Api  # the same nodes, seen from 127.0.0.2
    far_b: Api


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def pair(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Pair]:
    cluster = Cluster(tmp_path_factory.mktemp("pair"))
    far = aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=("127.0.0.2", 0)),
                                timeout=aiohttp.ClientTimeout(total=10))
    try:
        dep = await start_deployment(cluster, hq=False, centers=("A",), users_in=("A",),
                                     auth=AUTH)
        a = dep.node
        config = {"auth": {**AUTH, "auth_rate": 100_000}}
        b = await (await cluster.join(a, "b", config=config)).start()
        courier = await cluster.join(a, "courier")
        await wait_until(lambda: b.node_id in a.peers(), what="b connected to a")
        await wait_until(lambda: all(b.store.get(f"users/{u}") for u in dep.users),
                         what="the users reached b")
        yield Pair(dep, a, b, courier, dep.api, Api(cluster.http, b.api), Api(far, a.api),
                   Api(far, b.api))
    finally:
        await far.close()
        await cluster.close()


async def new_user(pair: Pair, role: str = "candidate") -> str:
    """Register a fresh user of centre A on a, and wait until b has it."""
    username = f"x{role[:4]}{next(_n)}"
    await pair.dep.add_user(username, role, "A")
    await wait_until(lambda: pair.b.store.get(f"users/{username}") is not None,
                     timeout=WITHIN, what=f"{username} reached b")
    return username


async def status_on(api: Api, token: str, username: str) -> int:
    return (await api.get(f"/api/auth/users/{username}/", token)).status


async def becomes(api: Api, token: str, username: str, status: int, what: str) -> float:
    """Poll until ``token`` gets ``status`` on ``api``; return how long it took."""
    start = time.monotonic()

    async def check() -> bool:
        return await status_on(api, token, username) == status

    await wait_until(check, timeout=WITHIN, what=what)
    return time.monotonic() - start


async def test_a_token_from_one_node_works_on_the_other(pair: Pair) -> None:
    username = await new_user(pair)
    for here, there in ((pair.api_a, pair.api_b), (pair.api_b, pair.api_a)):
        access, refresh = await here.tokens(username)
        assert await status_on(here, access, username) == 200
        await becomes(there, access, username, 200, "the session reached the other node")
        # A refresh on the other node rotates the same session.
        r = await there.post("/api/auth/refresh/", {"refresh": refresh})
        assert r.status == 200, r
        assert jwt_parts(r.body["access"])[1]["sid"] == jwt_parts(access)[1]["sid"]
        assert await status_on(here, r.body["access"], username) == 200


async def test_logout_on_one_node_holds_on_the_other(pair: Pair) -> None:
    username = await new_user(pair)
    access, refresh = await pair.api_a.tokens(username)
    await becomes(pair.api_b, access, username, 200, "the session reached b")
    assert (await pair.api_a.post("/api/auth/logout/", {"refresh": refresh})).status == 200
    took = await becomes(pair.api_b, access, username, 401, "the logout reached b")
    assert took < WITHIN
    assert (await pair.api_b.post("/api/auth/refresh/", {"refresh": refresh})).status == 401


async def test_a_reused_refresh_token_on_the_other_node_ends_the_session(pair: Pair) -> None:
    username = await new_user(pair)
    access, refresh0 = await pair.api_a.tokens(username)
    r = await pair.api_a.post("/api/auth/refresh/", {"refresh": refresh0})
    assert r.status == 200
    refresh1 = r.body["refresh"]
    sid = jwt_parts(access)[1]["sid"]
    await wait_until(lambda: (s := pair.b.store.get(f"sessions/{sid}")) is not None
                     and s.data.get("generation") == 1, timeout=WITHIN, what="rotation on b")
    r = await pair.api_b.post("/api/auth/refresh/", {"refresh": refresh0})
    assert r.status == 401, r
    await becomes(pair.api_a, access, username, 401, "the ended session reached a")
    assert (await pair.api_a.post("/api/auth/refresh/", {"refresh": refresh1})).status == 401


@pytest.mark.parametrize("by", ["username", "session_id"])
async def test_a_forced_logout_on_one_node_holds_on_the_other(pair: Pair, by: str) -> None:
    username = await new_user(pair)
    access, _ = await pair.api_b.tokens(username)
    other, _ = await pair.api_b.tokens(username)
    await becomes(pair.api_a, access, username, 200, "the session reached a")
    await becomes(pair.api_a, other, username, 200, "the session reached a")
    admin = pair.dep.user("center_admin", "A")
    body = {"username": username} if by == "username" else {
        "session_id": jwt_parts(access)[1]["sid"]}
    r = await pair.api_a.post("/api/auth/force-logout/", {**body, "reason": "left the hall"},
                              admin.access)
    assert r.status == 200 and r.body["ended"] == (2 if by == "username" else 1), r
    await becomes(pair.api_b, access, username, 401, "the forced logout reached b")
    if by == "username":
        await becomes(pair.api_b, other, username, 401, "every session ended on b")
    else:
        assert await status_on(pair.api_b, other, username) == 200
    r = await pair.api_a.post("/api/auth/force-logout/", {"username": username,
                                                          "session_id": "0" * 32}, admin.access)
    assert r.status == 400, r
    r = await pair.api_a.post("/api/auth/force-logout/", {"session_id": "0" * 32}, admin.access)
    assert r.status == 404, r


async def test_failures_on_both_nodes_lock_the_account_on_both(pair: Pair) -> None:
    username = await new_user(pair)
    admin = pair.dep.user("center_admin", "A")

    def failures(node: Node) -> int:
        keys = node.store.lookup("login_attempts", "username", username)
        return sum(1 for k in keys if record(node, k)["outcome"] == "failure")

    def both_count(n: int) -> Callable[[], bool]:
        return lambda: failures(pair.a) == failures(pair.b) == n

    for i in range(1, FAILURES + 1):
        far = pair.far_a if i % 2 else pair.far_b
        r = await far.login(username, "Wrong-Password-99")
        assert r.status == 401 and r.body["code"] == "not_authenticated", r
        await wait_until(both_count(i), timeout=WITHIN, what="the failure reached the other node")
    for api in (pair.api_a, pair.api_b):
        r = await api.login(username)
        assert r.status == 403 and r.body["code"] == "locked", r
        assert 0 < int(r.headers["Retry-After"]) <= AUTH["lockout_time"] + 1, r.headers
        assert "unlock" in r.body["detail"]
    r = await pair.api_a.get(f"/api/auth/users/{username}/", admin.access)
    assert r.status == 200 and r.body["locked"] is True, r
    # An unlock on b lets the user in on a.
    r = await pair.api_b.post(f"/api/auth/users/{username}/unlock/", None, admin.access)
    assert r.status == 200 and r.body["locked"] is False, r

    async def signs_in() -> bool:
        return (await pair.api_a.login(username)).status == 200

    await wait_until(signs_in, timeout=WITHIN, what="the unlock reached a")
    # The failures before the unlock no longer count.
    r = await pair.far_b.login(username, "Wrong-Password-99")
    assert r.status == 401, r
    assert (await pair.api_b.login(username)).status == 200


async def test_a_locked_account_shows_as_locked_everywhere(pair: Pair) -> None:
    """``locked`` is part of a user's API shape: the list must not say False for a locked
    account (an invigilator looks for the locked candidate in the list)."""
    username = await new_user(pair)
    admin = pair.dep.user("center_admin", "A")
    async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(local_addr=("127.0.0.3", 0))) as http:
        far = Api(http, pair.a.api)
        for _ in range(FAILURES):
            assert (await far.login(username, "Wrong-Password-99")).status == 401
        assert (await far.login(username)).status == 403
    r = await pair.api_a.get(f"/api/auth/users/{username}/", admin.access)
    assert r.body["locked"] is True, r
    rows = await pair.api_a.page_all(f"/api/auth/users/?search={username}", admin.access)
    assert [(u["username"], u["locked"]) for u in rows] == [(username, True)]


async def test_the_admin_signs_in_on_a_joined_node(pair: Pair) -> None:
    """The admin is a global user of the standalone centre; its sessions work anywhere."""
    root = pair.dep.admin
    r = await pair.api_b.login(root.username, root.password)
    assert r.status == 200, r
    await becomes(pair.api_a, r.body["access"], "root", 200, "b's admin session reached a")
    r = await pair.api_b.post("/api/auth/refresh/", {"refresh": root.refresh})
    assert r.status == 200, r


async def test_a_revoked_nodes_tokens_are_refused(pair: Pair) -> None:
    c = await (await pair.dep.cluster.join(pair.a, "c")).start()
    try:
        username = await new_user(pair)
        await wait_until(lambda: c.store.get(f"users/{username}") is not None,
                         what=f"{username} reached c")
        api_c = Api(pair.dep.cluster.http, c.api)
        access, refresh = await api_c.tokens(username)
        assert jwt_parts(access)[0]["kid"] == c.node_id
        await becomes(pair.api_a, access, username, 200, "c's session reached a")
        # The revocation record, as 'examnode revoke' writes it (node/cli/cluster.py).
        target = pair.a.ctx.policy.node_by_id(c.node_id)
        await pair.a.store.put(f"{REVOCATIONS}/{c.node_id}", {
            "node_id": c.node_id, "public_key": target.public_key.hex(),
            "revoked_at_ms": hlc_millis(pair.a.store.clock.now()), "reason": "stolen",
            "by": pair.a.node_id},
            scope=target.center)
        r = await pair.api_a.get(f"/api/auth/users/{username}/", access)
        assert r.status == 401 and "revoked" in r.body["detail"], r
        r = await pair.api_a.post("/api/auth/refresh/", {"refresh": refresh})
        assert r.status == 401 and "revoked" in r.body["detail"], r
        await becomes(pair.api_b, access, username, 401, "the revocation reached b")
        # Tokens of the other nodes are untouched.
        mine, _ = await pair.api_a.tokens(username)
        await becomes(pair.api_b, mine, username, 200, "a's session reached b")
    finally:
        await c.stop()


async def test_system_status_lists_peers_and_warns(pair: Pair) -> None:
    token = pair.dep.user("center_admin", "A").access

    async def status() -> dict[str, Any]:
        r = await pair.api_a.get("/api/auth/system-status/", token)
        assert r.status == 200, r
        body: dict[str, Any] = r.body
        return body

    body = await status()
    peers = {p["node_id"]: p for p in body["peers"]}
    assert peers[pair.b.node_id]["state"] == "connected"
    assert not [w for w in body["warnings"] if "clock" in w or "quarantine" in w]

    # A peer whose clock runs 30 s ahead: the courier, answering pings by hand.
    peer = RawPeer(pair.courier.data)
    await peer.connect(pair.a)

    async def answer_pings() -> None:
        while True:
            msg = await peer.recv(timeout=30)
            if msg is None:
                return
            if msg["t"] == "ping":
                await peer.send({"t": "pong", "ts": msg.get("ts"), "wall": time.time() + 30.0})

    pong = asyncio.create_task(answer_pings(), name="test-pong")
    try:
        async def clock_warning() -> bool:
            return any(f"clock of peer {pair.courier.node_id}" in w
                       for w in (await status())["warnings"])

        await wait_until(clock_warning, timeout=10, what="the clock warning")
    finally:
        pong.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await pong
        await peer.close()

    # A fork: two different first deltas signed with the courier's key.
    courier = Identity.load(pair.courier.data)
    sample = decode(next(iter(pair.a.store.raw_deltas(pair.a.ctx.identity.public_key, "A"))))
    forks = [encode(make_delta(courier, scope="A", seq=1, prev=GENESIS, key=f"probes/{k}",
                               update=sample.update, user="forger", hlc=sample.hlc + 1))
             for k in ("one", "two")]
    results = await pair.a.store.apply_remote(forks)
    assert [r.status for r in results] == [ApplyStatus.APPLIED, ApplyStatus.FORKED]
    body = await status()
    assert body["store"]["quarantined"] == 1
    assert any("quarantined" in w for w in body["warnings"]), body["warnings"]

