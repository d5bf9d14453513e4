"""Users and centres on an HQ: role rules, password policy, lists, audit, system status.

Every answer passes ``assert_no_secrets`` (conftest), so each test here also
checks that no password hash or TOTP secret leaves the node.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import pyotp
import pytest

from node.services.auth.permissions import CREATABLE, Role
from tests.auth.conftest import PASSWORD, Deployment, assert_no_secrets, record

pytestmark = pytest.mark.asyncio(loop_scope="module")

USERS = "/api/auth/users/"
CENTERS = "/api/auth/centers/"
_n = itertools.count()


def fresh(prefix: str = "u") -> str:
    return f"{prefix}{next(_n):03d}x"


# --- role rules -------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["admin", "center_admin", "invigilator", "evaluator",
                                  "candidate"])
@pytest.mark.parametrize("center", ["A", "B", None])
async def test_a_centre_admin_registers_only_staff_and_candidates_of_its_centre(
        hq: Deployment, role: str, center: str | None) -> None:
    actor = hq.user("center_admin", "A")
    username = fresh("reg")
    r = await hq.api.register(actor.access, username, role, center)
    allowed = Role(role) in CREATABLE[Role.CENTER_ADMIN] and center == "A"
    assert r.status == (201 if allowed else 403), r
    if allowed:
        assert (r.body["role"], r.body["center"]) == (role, "A")
    else:
        assert r.body["code"] == "permission_denied"
        assert hq.node.store.get(f"users/{username}") is None


async def test_a_centre_admin_cannot_change_its_own_role_or_status(hq: Deployment) -> None:
    actor = hq.user("center_admin", "A")
    me = f"{USERS}{actor.username}/"
    for change in ({"role": "admin"}, {"role": "invigilator"}, {"is_active": False},
                   {"center": "B"}):
        r = await hq.api.patch(me, change, actor.access)
        assert r.status == 403, (change, r)
    r = await hq.api.put(me, {"role": "admin", "center": None}, actor.access)
    assert r.status == 403, r
    assert record(hq.node, f"users/{actor.username}")["role"] == "center_admin"
    # What is not a privilege it may change; the same role is no change.
    r = await hq.api.patch(me, {"full_name": "Asha Admin", "role": "center_admin"}, actor.access)
    assert r.status == 200 and r.body["full_name"] == "Asha Admin", r


async def test_a_centre_admin_manages_only_what_it_may_create(hq: Deployment) -> None:
    actor = hq.user("center_admin", "A")
    cand = await hq.add_user(fresh("c"), "candidate", "A")
    peer = await hq.add_user(fresh("ca"), "center_admin", "A")
    path = f"{USERS}{cand.username}/"
    # Promote within what it may create: yes; to a role it may not create: no.
    r = await hq.api.patch(path, {"role": "invigilator"}, actor.access)
    assert r.status == 200 and r.body["role"] == "invigilator", r
    for role in ("center_admin", "admin", "evaluator"):
        r = await hq.api.patch(path, {"role": role}, actor.access)
        assert r.status == 403, (role, r)
    # A fellow centre admin is out of its hands (visible, but not manageable).
    r = await hq.api.patch(f"{USERS}{peer.username}/", {"full_name": "x"}, actor.access)
    assert r.status == 403, r
    r = await hq.api.delete(f"{USERS}{peer.username}/", actor.access)
    assert r.status == 403, r
    # Nobody moves a user between centres (a record's scope is fixed).
    r = await hq.api.patch(path, {"center": "B"}, hq.admin.access)
    assert r.status == 400 and "center" in r.body, r


async def test_a_candidate_reads_and_changes_only_itself(hq: Deployment) -> None:
    me = await hq.add_user(fresh("k"), "candidate", "A", login=True)
    path = f"{USERS}{me.username}/"
    r = await hq.api.get(path, me.access)
    assert r.status == 200 and r.body["username"] == me.username, r
    for other in ("candidate_a", "invigilator_a", "center_admin_a", "candidate_b", "root"):
        assert (await hq.api.get(f"{USERS}{other}/", me.access)).status == 404
        r = await hq.api.patch(f"{USERS}{other}/", {"full_name": "x"}, me.access)
        assert r.status == 404, r
    assert (await hq.api.get(USERS, me.access)).status == 403
    r = await hq.api.patch(path, {"full_name": "Kim Candidate", "email": "kim@example.org"},
                           me.access)
    assert r.status == 200 and r.body["email"] == "kim@example.org", r
    for change in ({"role": "admin"}, {"role": "invigilator"}, {"is_active": False}):
        r = await hq.api.patch(path, change, me.access)
        assert r.status == 403 and r.body["code"] == "permission_denied", (change, r)
    r = await hq.api.put(path, {"role": "center_admin", "center": "A"}, me.access)
    assert r.status == 403, r
    r = await hq.api.put(path, {"role": "candidate", "center": "A", "full_name": "Kim"},
                         me.access)
    assert r.status == 200 and r.body["full_name"] == "Kim" and r.body["email"] is None, r
    assert record(hq.node, f"users/{me.username}")["role"] == "candidate"
    # It changes its own password; the old one stops working.
    r = await hq.api.patch(path, {"password": "Green-Harbour-77"}, me.access)
    assert r.status == 200, r
    assert (await hq.api.login(me.username, PASSWORD)).status == 401
    assert (await hq.api.login(me.username, "Green-Harbour-77")).status == 200


async def test_deactivated_or_deleted_users_lose_their_tokens(hq: Deployment) -> None:
    a = await hq.add_user(fresh("d"), "invigilator", "A", login=True)
    b = await hq.add_user(fresh("d"), "invigilator", "A", login=True)
    r = await hq.api.patch(f"{USERS}{a.username}/", {"is_active": False}, hq.admin.access)
    assert r.status == 200 and r.body["is_active"] is False
    assert (await hq.api.delete(f"{USERS}{b.username}/", hq.admin.access)).status == 204
    for u in (a, b):
        r = await hq.api.get(f"{USERS}{u.username}/", u.access)
        assert r.status == 401 and r.body["code"] == "token_not_valid", r
        assert (await hq.api.post("/api/auth/refresh/", {"refresh": u.refresh})).status == 401
        r = await hq.api.login(u.username)
        assert r.status == 401 and r.body["code"] == "not_authenticated", r
    # A deleted username stays taken (its records keep their history).
    r = await hq.api.register(hq.admin.access, b.username, "invigilator", "A")
    assert r.status == 409 and "username" in r.body, r


# --- validation: field errors -----------------------------------------------------------------


@pytest.mark.parametrize(("password", "why"), [
    ("Sh0rt-pw", "at least 10"),
    ("password", "at least 10"),
    ("qwertyuiop", "too common"),
    ("xx{user}xx", "contains the username"),
    ("abababababab", "too few different"),
    ("x" * 300, "256"),
])
async def test_password_policy_errors_are_field_errors(
        hq: Deployment, password: str, why: str) -> None:
    username = fresh("pw")
    r = await hq.api.register(hq.admin.access, username, "candidate", "A",
                              password=password.format(user=username))
    assert r.status == 400, r
    assert r.body["code"] == "invalid" and isinstance(r.body["detail"], str), r
    assert isinstance(r.body["password"], list), r
    assert any(why in m for m in r.body["password"]), r
    assert hq.node.store.get(f"users/{username}") is None
    # The same policy guards a change of password.
    target = f"{USERS}{hq.user('candidate', 'A').username}/"
    r = await hq.api.patch(target, {"password": password.format(user="candidate_a")},
                           hq.admin.access)
    assert r.status == 400 and isinstance(r.body["password"], list), r


@pytest.mark.parametrize(("body", "field"), [
    ({"username": "a b", "role": "candidate", "center": "A"}, "username"),
    ({"username": "ok_name1", "role": "wizard", "center": "A"}, "role"),
    ({"username": "ok_name2", "role": "candidate", "center": "NOPE"}, "center"),
    ({"username": "ok_name3", "role": "candidate", "center": None}, "center"),
    ({"username": "ok_name4", "role": "admin", "center": "A"}, "center"),
    ({"username": "ok_name5", "role": "candidate", "center": "A", "email": "nope"}, "email"),
    ({"username": "ok_name6", "role": "candidate", "center": "A", "extra": 1}, "extra"),
    ({"role": "candidate", "center": "A"}, "username"),
])
async def test_invalid_registrations_name_the_field(
        hq: Deployment, body: dict[str, Any], field: str) -> None:
    r = await hq.api.post("/api/auth/register/", {"password": PASSWORD, **body},
                          hq.admin.access)
    assert r.status == 400 and field in r.body and r.body["code"] == "invalid", r


async def test_a_duplicate_username_is_a_conflict(hq: Deployment) -> None:
    r = await hq.api.register(hq.admin.access, "candidate_a", "candidate", "A")
    assert r.status == 409 and r.body["code"] == "conflict" and "username" in r.body, r
    r = await hq.api.post(CENTERS, {"code": "A", "name": "Again"}, hq.admin.access)
    assert r.status == 409 and "code" in r.body, r


async def test_no_answer_carries_a_secret(hq: Deployment) -> None:
    """Secrets live in the records but never leave the node (and the scan is not vacuous)."""
    me = await hq.add_user(fresh("s"), "invigilator", "A", login=True)
    setup = await hq.api.post("/api/auth/totp/setup/", None, me.access)
    assert setup.status == 200
    code = pyotp.TOTP(setup.body["secret"]).at(time.time() - 30)  # keep now() unused
    assert (await hq.api.post("/api/auth/totp/confirm/", {"otp": code}, me.access)).status == 200
    stored = record(hq.node, f"users/{me.username}")
    assert stored["password_hash"].startswith("$argon2id$") and stored["totp_secret"]
    answers = [
        await hq.api.get(f"{USERS}{me.username}/", me.access),
        await hq.api.get(f"{USERS}{me.username}/", hq.admin.access),
        await hq.api.get(f"{USERS}?page_size=500", hq.admin.access),
        await hq.api.patch(f"{USERS}{me.username}/", {"password": "Amber-Falcon-19"},
                           hq.admin.access),
        await hq.api.put(f"{USERS}{me.username}/", {"role": "invigilator", "center": "A"},
                         hq.admin.access),
        await hq.api.login(me.username, "Amber-Falcon-19",
                           otp=pyotp.TOTP(stored["totp_secret"]).now()),
        await hq.api.get("/api/auth/sessions/?page_size=500", hq.admin.access),
        await hq.api.get("/api/auth/login-attempts/?page_size=500", hq.admin.access),
        await hq.api.get("/api/audit/?page_size=500", hq.admin.access),
        await hq.api.get("/api/auth/system-status/", hq.admin.access),
    ]
    for r in answers:
        assert r.status == 200, r
    assert answers[5].body["user"]["totp_enabled"] is True
    # The scanner itself: it would have caught a leak.
    for leak in ({"password_hash": "$argon2id$v=19$..."}, {"user": {"totp_secret": "ABC"}},
                 {"results": [{"password": "x"}]}, {"detail": "$argon2id$v=19$m=..."}):
        with pytest.raises(AssertionError):
            assert_no_secrets(200, leak)
    assert_no_secrets(400, {"detail": "Invalid password.", "password": ["Too short."]})


# --- lists --------------------------------------------------------------------------------------


async def _list(hq: Deployment, query: str, token: str | None = None) -> list[dict[str, Any]]:
    return await hq.api.page_all(f"{USERS}?{query}", token or hq.admin.access)


async def test_users_list_paginates(hq: Deployment) -> None:
    every = await _list(hq, "")
    assert len(every) >= 9
    r = await hq.api.get(f"{USERS}?page_size=4", hq.admin.access)
    assert r.status == 200 and r.body["count"] == len(every) and len(r.body["results"]) == 4
    assert r.body["previous"] is None and "page=2" in r.body["next"]
    pages = r.body["results"]
    nxt = r.body["next"]
    while nxt:
        r = await hq.api.get(nxt.split(hq.node.api, 1)[1], hq.admin.access)
        assert r.status == 200 and r.body["previous"]
        pages += r.body["results"]
        nxt = r.body["next"]
    assert [u["username"] for u in pages] == [u["username"] for u in every]
    last = -(-len(every) // 4)
    r = await hq.api.get(f"{USERS}?page_size=4&page={last + 1}", hq.admin.access)
    assert r.status == 404, r
    for bad in ("page=0", "page=x", "page_size=0", "page_size=100000"):
        r = await hq.api.get(f"{USERS}?{bad}", hq.admin.access)
        assert r.status == 400, (bad, r)


async def test_users_list_filters_searches_and_orders(hq: Deployment) -> None:
    tag = fresh("zq")
    await hq.add_user(f"{tag}1", "evaluator", "B")
    r = await hq.api.register(hq.admin.access, f"{tag}2", "candidate", "A",
                              full_name="Zora Quill", email=f"{tag}@example.org",
                              is_active=False)
    assert r.status == 201, r
    by_center = await _list(hq, "center=B")
    assert by_center and {u["center"] for u in by_center} == {"B"}
    by_role = await _list(hq, "role=candidate")
    assert {u["role"] for u in by_role} == {"candidate"} and len(by_role) >= 2
    assert [u["username"] for u in await _list(hq, f"search={tag}&is_active=false")] == [
        f"{tag}2"]
    assert all(u["is_active"] is False for u in await _list(hq, "is_active=false"))
    assert f"{tag}2" not in [u["username"] for u in await _list(hq, "is_active=true")]
    assert [u["username"] for u in await _list(hq, "role=candidate&center=A&is_active=0")] \
        == [f"{tag}2"]
    # search: username, full name and email, case-insensitively
    assert {u["username"] for u in await _list(hq, f"search={tag.upper()}")} == {
        f"{tag}1", f"{tag}2"}
    assert [u["username"] for u in await _list(hq, "search=zora%20QUILL")] == [f"{tag}2"]
    assert [u["username"] for u in await _list(hq, f"search={tag}@example")] == [f"{tag}2"]
    assert await _list(hq, "search=nobody-has-this") == []
    # ordering, descending and by two keys
    names = [u["username"] for u in await _list(hq, "")]
    assert names == sorted(names)
    assert [u["username"] for u in await _list(hq, "ordering=-username")] == sorted(
        names, reverse=True)
    rows = [(u["role"], u["username"]) for u in await _list(hq, "ordering=role,-username")]
    assert [role for role, _ in rows] == sorted(role for role, _ in rows)
    for role in {role for role, _ in rows}:
        within = [name for r, name in rows if r == role]
        assert within == sorted(within, reverse=True)
    joined = [u["date_joined"] for u in await _list(hq, "ordering=-date_joined")]
    assert joined == sorted(joined, reverse=True)
    for bad in ("ordering=password_hash", "ordering=-nope", "ordering=username,totp_secret",
                "is_active=maybe"):
        r = await hq.api.get(f"{USERS}?{bad}", hq.admin.access)
        assert r.status == 400 and r.body["code"] == "invalid", (bad, r)
        assert ("ordering" in r.body) or ("is_active" in r.body), r
    # A centre admin's filters stay inside its reach.
    token = hq.user("center_admin", "A").access
    assert await _list(hq, "center=B", token) == []
    assert {u["center"] for u in await _list(hq, "role=candidate", token)} == {"A"}


async def test_centres_list_filters_and_reach(hq: Deployment) -> None:
    tag = fresh("C")
    for i, (city, active) in enumerate([("Pune", True), ("Pune", False), ("Goa", True)]):
        r = await hq.api.post(CENTERS, {"code": f"{tag}{i}", "name": f"{tag} hall {i}",
                                        "city": city, "capacity": 10 * (i + 1),
                                        "is_active": active}, hq.admin.access)
        assert r.status == 201, r
    mine = await hq.api.page_all(f"{CENTERS}?search={tag}", hq.admin.access)
    assert [c["code"] for c in mine] == [f"{tag}0", f"{tag}1", f"{tag}2"]
    q = f"{CENTERS}?search={tag}&"
    assert [c["code"] for c in await hq.api.page_all(q + "city=Pune", hq.admin.access)] == [
        f"{tag}0", f"{tag}1"]
    assert [c["code"] for c in await hq.api.page_all(q + "is_active=false",
                                                      hq.admin.access)] == [f"{tag}1"]
    assert [c["code"] for c in await hq.api.page_all(q + "ordering=-capacity",
                                                      hq.admin.access)] == [
        f"{tag}2", f"{tag}1", f"{tag}0"]
    r = await hq.api.get(f"{CENTERS}?ordering=secret", hq.admin.access)
    assert r.status == 400 and "ordering" in r.body, r
    # Centre staff see their own centre only, whatever they ask for.
    for role in ("center_admin", "invigilator", "candidate"):
        token = hq.user(role, "A").access
        assert [c["code"] for c in await hq.api.page_all(CENTERS, token)] == ["A"]
        assert await hq.api.page_all(f"{CENTERS}?search={tag}", token) == []
        assert (await hq.api.get(f"{CENTERS}{tag}0/", token)).status == 404
    r = await hq.api.patch(f"{CENTERS}{tag}1/", {"is_active": True, "capacity": 5},
                           hq.admin.access)
    assert r.status == 200 and r.body["is_active"] is True and r.body["capacity"] == 5, r
    r = await hq.api.put(f"{CENTERS}{tag}1/", {"name": "Renamed"}, hq.admin.access)
    assert r.status == 200 and r.body["name"] == "Renamed" and r.body["city"] == "", r
    r = await hq.api.post(CENTERS, {"code": "global", "name": "x"}, hq.admin.access)
    assert r.status == 400 and "code" in r.body, r


# --- audit ---------------------------------------------------------------------------------------


async def test_audit_shows_who_changed_what_where(hq: Deployment) -> None:
    ca = hq.user("center_admin", "A")
    username = fresh("au")
    r = await hq.api.register(ca.access, username, "candidate", "A")
    assert r.status == 201
    entries = await hq.api.page_all(f"/api/audit/?key=users/{username}", hq.admin.access)
    assert len(entries) == 1, entries
    [e] = entries
    assert (e["key"], e["user"], e["node"], e["scope"]) == (
        f"users/{username}", ca.username, hq.node.node_id, "A")
    assert abs(e["time"] - record(hq.node, f"users/{username}")["date_joined"]) < 5
    # Filters: by acting user and by node.
    by_user = await hq.api.page_all(f"/api/audit/?user={ca.username}", hq.admin.access)
    assert by_user and {x["user"] for x in by_user} == {ca.username}
    assert f"users/{username}" in {x["key"] for x in by_user}
    assert await hq.api.page_all("/api/audit/?node=AAAAAAA-BBBBBBB-CCCCCCC-DDDDDDD",
                                 hq.admin.access) == []
    # Newest first.
    every = await hq.api.page_all("/api/audit/", hq.admin.access)
    times = [x["time"] for x in every]
    assert times == sorted(times, reverse=True)
    assert {"A", "B", "global"} <= {x["scope"] for x in every}


async def test_a_centre_admin_sees_only_its_centres_audit(hq: Deployment) -> None:
    token = hq.user("center_admin", "A").access
    await hq.add_user(fresh("ab"), "candidate", "B")
    mine = await hq.api.page_all("/api/audit/", token)
    assert mine and {x["scope"] for x in mine} == {"A"}
    assert await hq.api.page_all("/api/audit/?scope=B", token) == []
    assert await hq.api.page_all("/api/audit/?key=centers/", token) == []  # global records
    assert await hq.api.page_all("/api/audit/?key=users/center_admin_b", token) == []
    assert (await hq.api.get("/api/audit/", hq.user("invigilator", "A").access)).status == 403


# --- system status -------------------------------------------------------------------------------


async def test_system_status_has_its_shape(hq: Deployment) -> None:
    r = await hq.api.get("/api/auth/system-status/", hq.admin.access)
    assert r.status == 200, r
    body = r.body
    assert body["node"]["node_id"] == hq.node.node_id
    assert (body["node"]["role"], body["node"]["status"]) == ("hq", "ok")
    assert body["node"]["uptime_seconds"] > 0 and body["node"]["version"]
    assert body["peers"] == []  # an HQ alone
    store = body["store"]
    assert store["records"] > 0 and store["deltas"] >= store["records"]
    assert (store["pending"], store["quarantined"]) == (0, 0)
    assert 0 < store["used_bytes"] < store["map_size"]
    assert 0 < body["disk"]["free_bytes"] <= body["disk"]["total_bytes"]
    assert isinstance(body["warnings"], list)
    # A centre admin may look; staff below it may not.
    assert (await hq.api.get("/api/auth/system-status/",
                             hq.user("center_admin", "A").access)).status == 200
    assert (await hq.api.get("/api/auth/system-status/",
                             hq.user("invigilator", "A").access)).status == 403
