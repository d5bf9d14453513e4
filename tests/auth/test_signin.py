"""Signing in: rate limits, the TOTP second factor, and what a sign-in reveals."""

from __future__ import annotations

import statistics
import time
import warnings
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pyotp
import pytest
import pytest_asyncio

from tests.auth.conftest import Api, Deployment, create_superuser, start_deployment
from tests.replication.conftest import Cluster, cli, edit_config

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def dep(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Deployment]:
    """A standalone centre A (its first node) with one user of every role, signed in."""
    cluster = Cluster(tmp_path_factory.mktemp("signin"))
    try:
        yield await start_deployment(cluster, hq=False, centers=("A",), users_in=("A",))
    finally:
        await cluster.close()


async def test_authenticated_requests_raise_no_warning(dep: Deployment) -> None:
    """aiohttp warns (NotAppKeyWarning) once per process for a str request key; under
    ``filterwarnings = error`` that first authenticated request fails with a 500."""
    from aiohttp.web_request import BaseRequest

    getattr(BaseRequest, "_seen_str_keys", set()).clear()  # as in a fresh process
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = await dep.api.get("/api/auth/users/", dep.admin.access)
    assert r.status == 200, r


# --- rate limit -------------------------------------------------------------------------------


async def test_sign_in_is_rate_limited_per_address(cluster: Cluster) -> None:
    node = await cluster.init("a1", center="A", config={"auth": {"auth_rate": 5}})
    await create_superuser(node.data, "root")
    await node.start()
    api = Api(cluster.http, node.api)
    for _ in range(5):
        r = await api.post("/api/auth/login/", {})  # invalid, but counted all the same
        assert r.status == 400, r
    for path, body in (("/api/auth/login/", {"username": "root", "password": "x"}),
                       ("/api/auth/refresh/", {"refresh": "x"})):
        r = await api.post(path, body)
        assert r.status == 429 and r.body["code"] == "throttled", r
        assert 1 <= int(r.headers["Retry-After"]) <= 60, r.headers
        assert "throttled" in r.body["detail"]
    # Another address has its own allowance.
    async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))) as far:
        r = await Api(far, node.api).post("/api/auth/login/", {})
        assert r.status == 400, r


# --- TOTP -------------------------------------------------------------------------------------


async def enrol(api: Api, token: str) -> pyotp.TOTP:
    r = await api.post("/api/auth/totp/setup/", None, token)
    assert r.status == 200, r
    totp = pyotp.TOTP(r.body["secret"])
    uri = r.body["otpauth_uri"]
    assert uri.startswith("otpauth://totp/") and f"secret={totp.secret}" in uri, uri
    assert "issuer=examnode" in uri, uri
    r = await api.post("/api/auth/totp/confirm/", {"otp": wrong(totp)}, token)
    assert r.status == 400 and "otp" in r.body, r
    # Confirm with the previous step's code (accepted: one step of drift), so that the
    # current code is still unused for the sign-ins the tests make next (codes are single-use).
    r = await api.post("/api/auth/totp/confirm/", {"otp": totp.at(time.time() - 30)}, token)
    assert r.status == 200, r
    return totp


def wrong(totp: pyotp.TOTP) -> str:
    """Return a code that is valid at no time near now."""
    near = {totp.at(time.time() + d) for d in (-60, -30, 0, 30, 60)}
    return next(c for c in ("000000", "111111", "222222", "333333", "444444",
                            "555555") if c not in near)


async def test_totp_enrolment_and_sign_in(dep: Deployment) -> None:
    user = await dep.add_user("totp_user", "invigilator", "A", login=True)
    assert (await dep.api.post("/api/auth/totp/confirm/", {"otp": "123456"},
                               user.access)).status == 400  # nothing pending
    totp = await enrol(dep.api, user.access)
    r = await dep.api.get("/api/auth/users/totp_user/", user.access)
    assert r.body["totp_enabled"] is True
    r = await dep.api.login("totp_user")
    assert r.status == 401 and r.body["code"] == "otp_required", r
    assert "6-digit code" in r.body["detail"]
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    r = await dep.api.login("totp_user", otp=wrong(totp))
    assert r.status == 401 and r.body["code"] == "not_authenticated", r
    r = await dep.api.login("totp_user", otp=totp.now())
    assert r.status == 200 and r.body["user"]["totp_enabled"] is True, r
    r = await dep.api.login("totp_user", "Wrong-Password-99", otp=totp.now())
    assert r.status == 401 and r.body["code"] == "not_authenticated", r
    for bad in ("12345", "abcdef", "1234567"):
        r = await dep.api.login("totp_user", otp=bad)
        assert r.status == 400 and "otp" in r.body, r
    # A candidate has no second factor to enrol.
    r = await dep.api.post("/api/auth/totp/setup/", None, dep.user("candidate").access)
    assert r.status == 403, r


async def test_a_totp_code_is_accepted_once(dep: Deployment) -> None:
    """RFC 6238 s5.2: once a code was accepted, the same code must not be accepted again
    (someone who saw it over a shoulder must not sign in with it)."""
    user = await dep.add_user("totp_once", "evaluator", "A", login=True)
    totp = await enrol(dep.api, user.access)
    code = totp.now()
    assert (await dep.api.login("totp_once", otp=code)).status == 200
    r = await dep.api.login("totp_once", otp=code)
    assert r.status == 401, r


async def test_required_totp_for_admins(cluster: Cluster) -> None:
    node = await cluster.init("a1", center="A",
                              config={"auth": {"auth_rate": 100_000, "lockout_failures": 100}})
    password = await create_superuser(node.data, "root")
    await node.start()
    api = Api(cluster.http, node.api)
    root, _ = await api.tokens("root", password)
    staff: dict[str, Any] = {}
    for username, role in (("ca_enrolled", "center_admin"), ("ca_bare", "center_admin"),
                           ("cand", "candidate")):
        assert (await api.register(root, username, role, "A")).status == 201
    access, _ = await api.tokens("ca_enrolled")
    staff["totp"] = await enrol(api, access)
    await node.stop()
    edit_config(node.data, {"auth": {"require_totp_for_admins": True}})
    await node.start()

    for username, pw in (("root", password), ("ca_bare", None)):
        r = await (api.login(username, pw) if pw else api.login(username))
        assert r.status == 401 and r.body["code"] == "otp_required", r
        assert "none is enrolled" in r.body["detail"], r
    r = await api.login("ca_enrolled")
    assert r.status == 401 and r.body["code"] == "otp_required", r
    assert (await api.login("ca_enrolled", otp=staff["totp"].now())).status == 200
    assert (await api.login("cand")).status == 200  # not an admin role
    # The message names a way to enrol: that way must exist.
    r = await api.login("ca_bare")
    assert "examnode totp" in r.body["detail"]
    result = await cli("totp", "--help")
    assert result.code == 0, (
        f"the sign-in error tells admins to run 'examnode totp', which does not exist: "
        f"{result.err}")


# --- what a sign-in reveals -------------------------------------------------------------------


async def test_a_wrong_password_and_an_unknown_user_look_alike(dep: Deployment) -> None:
    known = await dep.api.login("candidate_a", "Wrong-Password-99")
    unknown = await dep.api.login("no_such_user", "Wrong-Password-99")
    assert (known.status, known.body) == (unknown.status, unknown.body) == (
        401, {"detail": "No active account found with the given credentials",
              "code": "not_authenticated"})
    inactive = await dep.add_user("inactive_u", "candidate", "A")
    r = await dep.api.patch("/api/auth/users/inactive_u/", {"is_active": False},
                            dep.admin.access)
    assert r.status == 200
    r = await dep.api.login(inactive.username)
    assert (r.status, r.body) == (401, known.body)


async def test_sign_in_time_does_not_reveal_whether_a_user_exists(dep: Deployment) -> None:
    """An unknown username must cost about as much as a wrong password (Argon2 runs for
    both), or response times enumerate the accounts."""
    async def timed(username: str) -> float:
        start = time.perf_counter()
        r = await dep.api.login(username, "Wrong-Password-99")
        assert r.status == 401
        return time.perf_counter() - start

    known = statistics.median([await timed("candidate_a") for _ in range(3)])
    unknown = statistics.median([await timed(f"ghost{i}") for i in range(3)])
    assert unknown > 0.5 * known, (
        f"unknown user answered in {unknown * 1000:.0f} ms, a wrong password in "
        f"{known * 1000:.0f} ms")
