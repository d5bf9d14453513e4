"""An HQ and a provisioned centre node: who may sign in where, and what a centre node's
key may vouch for. Centre A's node ``a1`` is certified by A's centre CA, so it may write
scope A only (not ``global``, not B).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import pytest_asyncio

from node.identity import Identity
from node.services.auth.tokens import TokenService
from tests.auth.conftest import SHARED_AUTH, Api, Deployment, jwt_parts, start_deployment
from tests.replication.conftest import Cluster, Node, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="module")


@dataclass
class Centre:
    dep: Deployment  # the HQ, with centres A and B and their users
    a1: Node
    api_a1: Api


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def centre(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Centre]:
    cluster = Cluster(tmp_path_factory.mktemp("centres"))
    try:
        dep = await start_deployment(cluster, login_in=("A", "B"))
        hq = dep.node
        a1 = await cluster.init("a1", from_file=await cluster.provision(hq, "A"),
                                config={"auth": SHARED_AUTH,
                                        "discovery": {"peers": [hq.repl_addr]}})
        await a1.start()
        assert a1.ctx.trust is not None and not a1.ctx.trust.me.may_write("global")
        await wait_until(lambda: hq.node_id in a1.peers(), what="a1 connected to HQ")
        await wait_until(lambda: all(a1.store.get(f"users/{u}") for u in (
            "root", "candidate_a", "center_admin_a")), what="A's users reached a1")
        yield Centre(dep, a1, Api(cluster.http, a1.api))
    finally:
        await cluster.close()


async def test_centre_users_sign_in_at_their_centre_node(centre: Centre) -> None:
    api, hq_api = centre.api_a1, centre.dep.api
    access, _ = await api.tokens("invigilator_a")
    assert jwt_parts(access)[0]["kid"] == centre.a1.node_id

    async def works_at_hq() -> bool:
        return (await hq_api.get("/api/auth/users/invigilator_a/", access)).status == 200

    await wait_until(works_at_hq, timeout=2, what="a1's session reached HQ")
    # And a session opened at HQ works at the centre.
    hq_token = centre.dep.user("invigilator", "A").access
    assert (await api.get("/api/auth/users/invigilator_a/", hq_token)).status == 200


async def test_the_other_centres_users_do_not_exist_at_a_centre_node(centre: Centre) -> None:
    assert centre.a1.store.get("users/candidate_b") is None
    r = await centre.api_a1.login("candidate_b")
    assert r.status == 401 and r.body["code"] == "not_authenticated", r
    # A token of B's user, issued at HQ, names a session a1 never receives.
    r = await centre.api_a1.get("/api/auth/users/candidate_b/",
                                centre.dep.user("candidate", "B").access)
    assert r.status == 401, r


async def test_an_hq_admin_signs_in_at_a_centre_node(centre: Centre) -> None:
    """Admins are global users. A session opened at HQ is honoured at a centre node; a centre
    node, which may not write ``global``, does not open sessions for them (it could not be
    trusted to: see the next test), and says so clearly; a wrong password is still a 401."""
    root = centre.dep.admin
    assert (await centre.api_a1.get("/api/auth/users/", root.access)).status == 200
    r = await centre.api_a1.login(root.username, root.password)
    assert r.status == 403, r
    assert "HQ node" in r.body["detail"]
    r = await centre.api_a1.login(root.username, "Wrong-Password-99")
    assert r.status == 401 and r.body["code"] == "not_authenticated", r


async def test_a_centre_node_cannot_vouch_for_users_beyond_its_centre(centre: Centre) -> None:
    """A centre node's key signs for the sessions it opened; it must not turn a session of
    its centre into one of an HQ admin or of another centre's admin (a stolen hall laptop:
    it may write scope A, so A's users are already in its hands, but no others)."""
    access, _ = await centre.api_a1.tokens("candidate_a")
    sid = jwt_parts(access)[1]["sid"]
    identity = Identity.load(centre.a1.data)
    service = TokenService(identity, identity.node_id, lambda _k: None, lambda _k: False)
    hq_api = centre.dep.api
    await wait_until(lambda: centre.dep.node.store.get(f"sessions/{sid}") is not None,
                     timeout=2, what="the session reached HQ")
    for username, role, center in (("root", "admin", None),
                                   ("center_admin_b", "center_admin", "B")):
        forged = service.issue(username=username, role=role, center=center, session_id=sid,
                               kind="access", ttl=300, now=time.time())
        r = await hq_api.get("/api/auth/users/", forged)
        assert r.status == 401, (username, r)
    # The same key's token for the session's own user is what the protocol allows.
    own = service.issue(username="candidate_a", role="candidate", center="A", session_id=sid,
                        kind="access", ttl=300, now=time.time())
    assert (await hq_api.get("/api/auth/users/candidate_a/", own)).status == 200
