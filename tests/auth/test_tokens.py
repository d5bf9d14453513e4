"""Tokens: forgeries are refused with 401, refresh tokens rotate, reuse ends the session.

Each forgery differs from a token the node accepts (``test_a_resigned_copy_is_accepted``)
in one respect only, so a 401 is caused by that respect.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from node.identity import Identity
from node.services.auth.tokens import LEEWAY, TokenService
from tests.auth.conftest import (
    Api,
    Deployment,
    Reply,
    b64e,
    jwt_parts,
    record,
    start_deployment,
)
from tests.replication.conftest import Cluster, cli

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def dep(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A standalone centre A (its first node) with one user of every role, signed in."""
    cluster = Cluster(tmp_path_factory.mktemp("tokens"))
    try:
        yield await start_deployment(cluster, hq=False, centers=("A",), users_in=("A",))
    finally:
        await cluster.close()


def private_key(identity: Identity) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes(identity.signing_key))


def claims_of(dep: Deployment, role: str = "candidate") -> dict[str, Any]:
    """Return the payload of a genuine access token of ``role`` (a template to forge from)."""
    return jwt_parts(dep.user(role).access)[1]


def sign(dep: Deployment, payload: dict[str, Any], *, identity: Identity | None = None,
         kid: str | None = None, headers: dict[str, Any] | None = None) -> str:
    """Sign ``payload`` with EdDSA, by default with the node's own key and kid."""
    key = private_key(identity or dep.node.ctx.identity)
    hdrs = {"kid": kid if kid is not None else dep.node.node_id, **(headers or {})}
    return jwt.encode(payload, key, algorithm="EdDSA", headers=hdrs)


def unsigned(header: dict[str, Any], payload: dict[str, Any], signature: bytes = b"") -> str:
    enc = [b64e(json.dumps(p, separators=(",", ":")).encode()) for p in (header, payload)]
    return f"{enc[0]}.{enc[1]}.{b64e(signature)}"


async def me(dep: Deployment, token: str, username: str = "candidate_a") -> Reply:
    return await dep.api.get(f"/api/auth/users/{username}/", token)


async def assert_refused(dep: Deployment, token: str, why: str = "") -> None:
    r = await me(dep, token)
    assert r.status == 401, r
    assert r.body["code"] == "token_not_valid", r
    assert r.headers["WWW-Authenticate"].startswith("Bearer"), r.headers
    assert why.lower() in r.body["detail"].lower(), r


async def test_a_resigned_copy_is_accepted(dep: Deployment) -> None:
    """The baseline every forgery departs from: our signing helper makes valid tokens."""
    assert (await me(dep, dep.user("candidate").access)).status == 200
    assert (await me(dep, sign(dep, claims_of(dep)))).status == 200


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
async def test_alg_none_is_refused(dep: Deployment, alg: str) -> None:
    header = {"alg": alg, "typ": "JWT", "kid": dep.node.node_id}
    await assert_refused(dep, unsigned(header, claims_of(dep)))
    # Nor with the genuine signature left in place.
    await assert_refused(dep, unsigned(header, claims_of(dep),
                                       signature=jwt_parts_sig(dep.user("candidate").access)))


def jwt_parts_sig(token: str) -> bytes:
    from tests.auth.conftest import b64d

    return b64d(token.rsplit(".", 1)[1])


@pytest.mark.parametrize("alg", ["HS256", "HS512"])
async def test_hmac_signed_with_the_public_key_is_refused(dep: Deployment, alg: str) -> None:
    """The key-confusion attack: the public key (known to all) used as an HMAC secret."""
    public = dep.node.ctx.identity.public_key
    pem = private_key(dep.node.ctx.identity).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    digest = hashlib.sha256 if alg == "HS256" else hashlib.sha512
    header = {"alg": alg, "typ": "JWT", "kid": dep.node.node_id}
    for secret in (public, pem, public.hex().encode(), dep.node.node_id.encode()):
        head_payload = unsigned(header, claims_of(dep)).rsplit(".", 1)[0]
        mac = hmac.new(secret, head_payload.encode(), digest).digest()
        await assert_refused(dep, f"{head_payload}.{b64e(mac)}")


async def test_unknown_or_missing_key_id_is_refused(dep: Deployment) -> None:
    claims = claims_of(dep)
    await assert_refused(dep, sign(dep, claims, kid="AAAAAAA-BBBBBBB-CCCCCCC-DDDDDDD"))
    await assert_refused(dep, sign(dep, {**claims, "iss": "AAAAAAA-BBBBBBB-CCCCCCC-DDDDDDD"},
                                   kid="AAAAAAA-BBBBBBB-CCCCCCC-DDDDDDD"))
    await assert_refused(dep, sign(dep, claims, kid=""))
    header = {"alg": "EdDSA", "typ": "JWT"}  # no kid at all
    body = unsigned(header, claims).rsplit(".", 1)[0]
    sig = dep.node.ctx.identity.sign(body.encode())
    await assert_refused(dep, f"{body}.{b64e(sig)}")
    # An issuer that is not the key id.
    await assert_refused(dep, sign(dep, {**claims, "iss": "someone-else"}))


async def test_a_key_of_another_deployment_is_refused(dep: Deployment, tmp_path: Path) -> None:
    result = await cli("init", "--data", tmp_path / "elsewhere", "--center", "A",
                       "--mdns-interface", "none")
    assert result.code == 0, result.err
    stranger = Identity.load(tmp_path / "elsewhere")
    claims = claims_of(dep, "center_admin")
    # Under its own node id: unknown here.
    await assert_refused(dep, sign(dep, {**claims, "iss": stranger.node_id},
                                   identity=stranger, kid=stranger.node_id))
    # Posing as this node: the signature does not verify.
    await assert_refused(dep, sign(dep, claims, identity=stranger))
    # Its own token service, as that deployment's node would issue it.
    service = TokenService(stranger, stranger.node_id, lambda _kid: stranger.public_key,
                           lambda _kid: False)
    forged = service.issue(username="candidate_a", role="admin", center="A",
                           session_id=claims["sid"], kind="access", ttl=300)
    await assert_refused(dep, forged)


async def test_an_expired_token_is_refused(dep: Deployment) -> None:
    tokens = dep.node.ctx.auth.tokens
    claims = claims_of(dep)
    common = {"username": "candidate_a", "role": "candidate", "center": "A",
              "session_id": claims["sid"], "kind": "access"}
    await assert_refused(dep, tokens.issue(**common, ttl=300, now=time.time() - 3600),
                         "expired")
    # One that expires while it is in the verification cache.
    now = time.time()
    short = tokens.issue(**common, ttl=30, now=now - 30 - LEEWAY + 2.5)  # valid 1.5-2.5 s
    assert (await me(dep, short)).status == 200
    await asyncio.sleep(max(0.0, now + 3.0 - time.time()))
    await assert_refused(dep, short, "expired")


async def test_a_token_not_yet_valid_is_refused(dep: Deployment) -> None:
    tokens = dep.node.ctx.auth.tokens
    claims = claims_of(dep)
    future = tokens.issue(username="candidate_a", role="candidate", center="A",
                          session_id=claims["sid"], kind="access", ttl=300,
                          now=time.time() + 3600)
    await assert_refused(dep, future, "not yet valid")
    now = int(time.time())
    await assert_refused(dep, sign(dep, {**claims, "nbf": now + 600}), "not yet valid")
    await assert_refused(dep, sign(dep, {**claims, "iat": now + 600}))


async def test_missing_claims_are_refused(dep: Deployment) -> None:
    claims = claims_of(dep)
    for name in ("exp", "nbf", "iat", "sub", "sid", "typ"):
        await assert_refused(dep, sign(dep, {k: v for k, v in claims.items() if k != name}))
    await assert_refused(dep, sign(dep, {**claims, "sid": "0" * 32}), "session")


async def test_a_tampered_payload_is_refused(dep: Deployment) -> None:
    token = dep.user("candidate").access
    head, _payload, sig = token.split(".")
    claims = claims_of(dep)
    for change in ({"role": "admin"}, {"sub": "root"}, {"sub": "center_admin_a"},
                   {"exp": claims["exp"] + 86400}, {"typ": "refresh"}):
        tampered = {**claims, **change}
        body = b64e(json.dumps(tampered, separators=(",", ":")).encode())
        await assert_refused(dep, f"{head}.{body}.{sig}")
    await assert_refused(dep, f"{head}.{_payload}.")
    await assert_refused(dep, f"{head}.{_payload}")
    await assert_refused(dep, token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB"))


async def test_refresh_and_access_tokens_are_not_interchangeable(dep: Deployment) -> None:
    user = dep.user("invigilator")
    await assert_refused(dep, user.refresh, "wrong type")
    for path in ("/api/auth/refresh/", "/api/auth/logout/"):
        r = await dep.api.post(path, {"refresh": user.access})
        assert r.status == 401 and r.body["code"] == "token_not_valid", r
    assert (await dep.api.get("/api/auth/users/invigilator_a/", user.access)).status == 200


# --- refresh rotation and logout --------------------------------------------------------------


async def _refresh(api: Api, token: str) -> Reply:
    return await api.post("/api/auth/refresh/", {"refresh": token})


async def test_refresh_rotates(dep: Deployment) -> None:
    access, refresh = await dep.api.tokens("evaluator_a")
    seen = {refresh}
    for _ in range(3):
        r = await _refresh(dep.api, refresh)
        assert r.status == 200, r
        assert set(r.body) == {"access", "refresh"}
        assert r.body["refresh"] not in seen
        refresh = r.body["refresh"]
        seen.add(refresh)
        assert (await dep.api.get("/api/auth/users/evaluator_a/", r.body["access"])).status == 200
        assert jwt_parts(r.body["access"])[1]["sid"] == jwt_parts(access)[1]["sid"]


async def test_a_reused_refresh_token_ends_the_session(dep: Deployment) -> None:
    access0, refresh0 = await dep.api.tokens("evaluator_a")
    r = await _refresh(dep.api, refresh0)
    assert r.status == 200
    access1, refresh1 = r.body["access"], r.body["refresh"]
    # The old refresh token again: refused, and the whole session ends with it.
    r = await _refresh(dep.api, refresh0)
    assert r.status == 401 and r.body["code"] == "token_not_valid", r
    assert "already used" in r.body["detail"]
    r = await _refresh(dep.api, refresh1)
    assert r.status == 401, r
    for token in (access0, access1):
        r = await dep.api.get("/api/auth/users/evaluator_a/", token)
        assert r.status == 401, r
    sid = jwt_parts(access0)[1]["sid"]
    session = record(dep.node, f"sessions/{sid}")
    assert session["revoked"] and session["reason"] == "refresh token reused"
    # Other sessions of the user go on.
    assert (await dep.api.get("/api/auth/users/evaluator_a/",
                              dep.user("evaluator").access)).status == 200


async def test_logout_ends_the_session(dep: Deployment) -> None:
    access, refresh = await dep.api.tokens("evaluator_a")
    r = await dep.api.post("/api/auth/logout/", {"refresh": refresh})
    assert r.status == 200, r
    assert (await dep.api.get("/api/auth/users/evaluator_a/", access)).status == 401
    assert (await _refresh(dep.api, refresh)).status == 401
    assert (await dep.api.post("/api/auth/logout/", {"refresh": refresh})).status == 200
    for body in ({}, {"refresh": ""}, {"refresh": "x.y.z"}):
        r = await dep.api.post("/api/auth/logout/", body)
        assert r.status in (400, 401), r


async def test_sessions_list_shows_own_sessions_and_their_state(dep: Deployment) -> None:
    access, refresh = await dep.api.tokens("invigilator_a")
    await dep.api.post("/api/auth/logout/", {"refresh": refresh})
    user = dep.user("invigilator")
    rows = await dep.api.page_all("/api/auth/sessions/", user.access)
    assert rows and {s["username"] for s in rows} == {"invigilator_a"}
    by_id = {s["id"]: s for s in rows}
    ended = by_id[jwt_parts(access)[1]["sid"]]
    live = by_id[jwt_parts(user.access)[1]["sid"]]
    assert (ended["active"], live["active"]) == (False, True)
    assert ended["reason"] == "logout" and live["node"] == dep.node.node_id
    created = [s["created"] for s in rows]
    assert created == sorted(created, reverse=True)
