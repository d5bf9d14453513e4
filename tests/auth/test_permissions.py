"""The permission table, enforced: one generated case per action, role and target.

The cases come from ``node.services.auth.permissions.TABLE``; the mapping below
says which request performs each action. An action the mapping lacks fails
``test_every_action_of_the_table_is_mapped``. Actors are the users of centre A
(and the HQ admin); targets are the actor's own object, an object of the
actor's centre and one of the other centre (B). Expected: allowed -> 2xx,
not in the table -> 403, out of reach ('own centre' or 'self') -> 404 by id and
absent from lists, no credentials -> 401 with ``WWW-Authenticate``.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio

from node.services.auth.permissions import TABLE, Reach, Role
from tests.auth.conftest import ROLES, Deployment, User, name_of, record

pytestmark = pytest.mark.asyncio(loop_scope="module")

OBJECT_TARGETS = ("own", "same", "other")
_n = itertools.count()


def target_center(target: str) -> str:
    return "B" if target == "other" else "A"


def expected(reach: Reach | None, target: str, success: int = 200) -> int:
    """Return the status the table promises for a target of an object endpoint."""
    if reach is None:
        return 403
    if reach is Reach.ALL or target == "own":
        return success
    if reach is Reach.CENTER:
        return success if target == "same" else 404
    return 404  # Reach.SELF: only the actor's own object exists


# --- object endpoints -----------------------------------------------------------------------


def target_user(dep: Deployment, actor: User, target: str) -> str:
    """Return the username an object case acts on: the actor, or a candidate of centre A or
    B (``target_a``, ``target_b``: every role that manages users may manage candidates)."""
    return actor.username if target == "own" else f"target_{target_center(target).lower()}"


async def users_read(dep: Deployment, actor: User, target: str, reach: Reach | None) -> None:
    username = target_user(dep, actor, target)
    r = await dep.api.get(f"/api/auth/users/{username}/", actor.access)
    assert r.status == expected(reach, target), r
    if r.status == 200:
        assert r.body["id"] == r.body["username"] == username


async def users_update(dep: Deployment, actor: User, target: str, reach: Reach | None) -> None:
    username = target_user(dep, actor, target)
    name = f"Name {next(_n)}"
    r = await dep.api.patch(f"/api/auth/users/{username}/", {"full_name": name}, actor.access)
    assert r.status == expected(reach, target), r
    stored = dep.node.store.get(f"users/{username}")
    assert stored is not None
    assert (stored.data["full_name"] == name) is (r.status == 200)


async def users_delete(dep: Deployment, actor: User, target: str, reach: Reach | None) -> None:
    want = expected(reach, target, 204)
    if target == "own":
        # The table allows the action, but nobody may delete their own account.
        want = 403
        username = actor.username
    elif want == 204:  # a fresh victim for each deletion that succeeds
        username = (await dep.add_user(f"victim{next(_n)}", "candidate",
                                       target_center(target))).username
    else:
        username = target_user(dep, actor, target)
    r = await dep.api.delete(f"/api/auth/users/{username}/", actor.access)
    assert r.status == want, r
    assert (dep.node.store.get(f"users/{username}") is None) is (r.status == 204)


async def users_unlock(dep: Deployment, actor: User, target: str, reach: Reach | None) -> None:
    username = target_user(dep, actor, target)
    r = await dep.api.post(f"/api/auth/users/{username}/unlock/", None, actor.access)
    assert r.status == expected(reach, target), r


async def centers_read(dep: Deployment, actor: User, target: str, reach: Reach | None) -> None:
    code = target_center(target)
    r = await dep.api.get(f"/api/auth/centers/{code}/", actor.access)
    assert r.status == expected(reach, target), r
    if r.status == 200:
        assert r.body["id"] == r.body["code"] == code


async def centers_update(dep: Deployment, actor: User, target: str,
                         reach: Reach | None) -> None:
    code = target_center(target)
    city = f"City {next(_n)}"
    r = await dep.api.patch(f"/api/auth/centers/{code}/", {"city": city}, actor.access)
    assert r.status == expected(reach, target), r
    assert (record(dep.node, f"centers/{code}")["city"] == city) is (r.status == 200)


async def force_logout(dep: Deployment, actor: User, target: str, reach: Reach | None) -> None:
    want = expected(reach, target)
    if want == 200:  # a fresh session of the target user, so that ending it harms nothing
        owner = actor.username if target == "own" else target_user(dep, actor, target)
        password = actor.password if target == "own" else dep.users[owner].password
        r = await dep.api.login(owner, password)
        assert r.status == 200, r
        session = dep.node.ctx.auth.tokens.verify(r.body["access"], "access").session_id
    else:
        session = dep.notes[f"bystander-{target_center(target)}"]
    r = await dep.api.post("/api/auth/force-logout/", {"session_id": session}, actor.access)
    assert r.status == want, r
    ended = bool(record(dep.node, f"sessions/{session}").get("revoked"))
    assert ended is (want == 200)
    if want == 200:
        assert r.body["ended"] == 1


# --- requests without a target --------------------------------------------------------------


async def users_create(dep: Deployment, actor: User, target: str, reach: Reach | None) -> None:
    username = f"new{next(_n)}"
    r = await dep.api.register(actor.access, username, "candidate", target_center(target))
    if reach is None:
        assert r.status == 403, r
    elif reach is Reach.CENTER and target == "other":
        assert r.status == 403, r  # creating, not reading: refused, not hidden
    else:
        assert r.status == 201, r
        assert r.body["center"] == target_center(target)
    assert (dep.node.store.get(f"users/{username}") is not None) is (r.status == 201)


async def centers_create(dep: Deployment, actor: User, target: str,
                         reach: Reach | None) -> None:
    code = f"N{next(_n)}"
    r = await dep.api.post("/api/auth/centers/", {"code": code, "name": code}, actor.access)
    assert r.status == (201 if reach else 403), r


async def system_status(dep: Deployment, actor: User, target: str, reach: Reach | None) -> None:
    r = await dep.api.get("/api/auth/system-status/", actor.access)
    assert r.status == (200 if reach else 403), r
    if r.status == 200:
        assert {"node", "peers", "store", "warnings"} <= set(r.body)


async def totp_setup(dep: Deployment, actor: User, target: str, reach: Reach | None) -> None:
    r = await dep.api.post("/api/auth/totp/setup/", None, actor.access)
    assert r.status == (200 if reach else 403), r
    if r.status == 200:
        assert r.body["otpauth_uri"].startswith("otpauth://totp/")


# --- lists: out-of-reach objects are absent -------------------------------------------------


def list_case(path: str, owner: Callable[[dict[str, Any]], tuple[str | None, str | None]]
              ) -> Callable[[Deployment, User, str, Reach | None], Awaitable[None]]:
    """Return a list case; ``owner(item)`` is the (centre, username) of an item."""
    async def run(dep: Deployment, actor: User, target: str, reach: Reach | None) -> None:
        r = await dep.api.get(f"{path}?page_size=500", actor.access)
        if reach is None:
            assert r.status == 403, r
            return
        assert r.status == 200, r
        assert r.body["next"] is None
        owners = [owner(item) for item in r.body["results"]]
        centers = {c for c, _u in owners}
        assert owners, f"{path} is empty for {actor.username}"
        if reach is Reach.ALL:
            assert {"A", "B"} <= centers, centers
        elif reach is Reach.CENTER:
            assert centers == {"A"}, centers
        else:
            assert {u for _c, u in owners} == {actor.username}, owners
    return run


def _user_owner(item: dict[str, Any]) -> tuple[str | None, str | None]:
    """Users, sessions and sign-in attempts: their centre and username."""
    return item["center"], item["username"]


def _audit_owner(item: dict[str, Any]) -> tuple[str | None, str | None]:
    return item["scope"], None


def _center_owner(item: dict[str, Any]) -> tuple[str | None, str | None]:
    return item["code"], None


@dataclass(frozen=True)
class Case:
    run: Callable[[Deployment, User, str, Reach | None], Awaitable[None]]
    targets: tuple[str, ...]
    method: str  # for the unauthenticated request
    path: str


# --- candidates (issue 5) ------------------------------------------------------------------

async def ensure_candidates(dep: Deployment) -> None:
    """Give centres A and B one candidate each (roll numbers ROLL-A, ROLL-B)."""
    for code in ("A", "B"):
        if dep.node.store.get(f"candidates/ROLL-{code}") is None:
            r = await dep.api.post("/api/candidates/", {
                "roll_no": f"ROLL-{code}", "full_name": f"Candidate {code}", "center": code},
                dep.admin.access)
            assert r.status == 201, r


async def candidates_list(dep: Deployment, actor: User, target: str,
                          reach: Reach | None) -> None:
    await ensure_candidates(dep)
    await list_case("/api/candidates/", lambda item: (item["center"], None))(
        dep, actor, target, reach)


async def candidates_read(dep: Deployment, actor: User, target: str,
                          reach: Reach | None) -> None:
    await ensure_candidates(dep)
    roll = f"ROLL-{target_center(target)}"
    r = await dep.api.get(f"/api/candidates/{roll}/", actor.access)
    assert r.status == expected(reach, target), r


async def candidates_update(dep: Deployment, actor: User, target: str,
                            reach: Reach | None) -> None:
    await ensure_candidates(dep)
    roll = f"ROLL-{target_center(target)}"
    name = f"Name {next(_n)}"
    r = await dep.api.patch(f"/api/candidates/{roll}/", {"full_name": name}, actor.access)
    assert r.status == expected(reach, target), r
    assert (record(dep.node, f"candidates/{roll}")["full_name"] == name) is (r.status == 200)


async def candidates_create(dep: Deployment, actor: User, target: str,
                            reach: Reach | None) -> None:
    roll = f"NEW{next(_n)}"
    r = await dep.api.post("/api/candidates/", {"roll_no": roll, "full_name": "New One",
                                                "center": target_center(target)}, actor.access)
    if reach is None or (reach is Reach.CENTER and target == "other"):
        assert r.status == 403, r
    else:
        assert r.status == 201, r
    assert (dep.node.store.get(f"candidates/{roll}") is not None) is (r.status == 201)


async def candidates_delete(dep: Deployment, actor: User, target: str,
                            reach: Reach | None) -> None:
    want = expected(reach, target, 204)
    roll = f"VICTIM{next(_n)}"
    r = await dep.api.post("/api/candidates/", {"roll_no": roll, "full_name": "Victim",
                                                "center": target_center(target)},
                           dep.admin.access)
    assert r.status == 201, r
    r = await dep.api.delete(f"/api/candidates/{roll}/", actor.access)
    assert r.status == want, r
    assert (dep.node.store.get(f"candidates/{roll}") is None) is (want == 204)


async def candidates_files(dep: Deployment, actor: User, target: str,
                           reach: Reach | None) -> None:
    import io

    from PIL import Image

    await ensure_candidates(dep)
    roll = f"ROLL-{target_center(target)}"
    png = io.BytesIO()
    Image.new("RGB", (40, 50), (200, 10, 10)).save(png, format="PNG")
    r = await dep.api.raw("PUT", f"/api/candidates/{roll}/photo/", actor.access,
                          data=png.getvalue(), headers={"Content-Type": "image/png"})
    assert r.status == expected(reach, target), r


async def candidates_import(dep: Deployment, actor: User, target: str,
                            reach: Reach | None) -> None:
    roll = f"IMP{next(_n)}"
    csv = f"roll_no,full_name,center\n{roll},Imported,A\n".encode()
    r = await dep.api.raw("POST", "/api/candidates/import/?wait=true", actor.access,
                          data=csv, headers={"Content-Type": "text/csv"})
    assert r.status == (200 if reach else 403), r
    if r.status == 200:
        assert (r.body["created"], r.body["rejected"]) == (1, 0), r


async def candidates_export(dep: Deployment, actor: User, target: str,
                            reach: Reach | None) -> None:
    r = await dep.api.raw("GET", "/api/candidates/export/?format=csv", actor.access)
    assert r.status == (200 if reach else 403), r


ACTIONS: dict[str, Case] = {
    "candidates.list": Case(candidates_list, ("list",), "GET", "/api/candidates/"),
    "candidates.read": Case(candidates_read, ("same", "other"), "GET",
                            "/api/candidates/ROLL-A/"),
    "candidates.create": Case(candidates_create, ("same", "other"), "POST",
                              "/api/candidates/"),
    "candidates.update": Case(candidates_update, ("same", "other"), "PATCH",
                              "/api/candidates/ROLL-A/"),
    "candidates.delete": Case(candidates_delete, ("same", "other"), "DELETE",
                              "/api/candidates/ROLL-A/"),
    "candidates.files": Case(candidates_files, ("same", "other"), "PUT",
                             "/api/candidates/ROLL-A/photo/"),
    "candidates.import": Case(candidates_import, ("same",), "POST",
                              "/api/candidates/import/"),
    "candidates.export": Case(candidates_export, ("same",), "GET", "/api/candidates/export/"),
    "users.list": Case(list_case("/api/auth/users/", _user_owner), ("list",),
                       "GET", "/api/auth/users/"),
    "users.create": Case(users_create, ("same", "other"), "POST", "/api/auth/register/"),
    "users.read": Case(users_read, OBJECT_TARGETS, "GET", "/api/auth/users/candidate_a/"),
    "users.update": Case(users_update, OBJECT_TARGETS, "PATCH",
                         "/api/auth/users/candidate_a/"),
    "users.delete": Case(users_delete, OBJECT_TARGETS, "DELETE",
                         "/api/auth/users/candidate_a/"),
    "users.unlock": Case(users_unlock, OBJECT_TARGETS, "POST",
                         "/api/auth/users/candidate_a/unlock/"),
    "centers.list": Case(list_case("/api/auth/centers/", _center_owner), ("list",),
                         "GET", "/api/auth/centers/"),
    "centers.create": Case(centers_create, ("new",), "POST", "/api/auth/centers/"),
    "centers.read": Case(centers_read, ("same", "other"), "GET", "/api/auth/centers/A/"),
    "centers.update": Case(centers_update, ("same", "other"), "PATCH", "/api/auth/centers/A/"),
    "sessions.list": Case(list_case("/api/auth/sessions/", _user_owner), ("list",),
                          "GET", "/api/auth/sessions/"),
    "sessions.force_logout": Case(force_logout, OBJECT_TARGETS, "POST",
                                  "/api/auth/force-logout/"),
    "login_attempts.list": Case(list_case("/api/auth/login-attempts/", _user_owner),
                                ("list",), "GET", "/api/auth/login-attempts/"),
    "system.status": Case(system_status, ("node",), "GET", "/api/auth/system-status/"),
    "audit.list": Case(list_case("/api/audit/", _audit_owner), ("list",), "GET", "/api/audit/"),
    "totp.setup": Case(totp_setup, ("self",), "POST", "/api/auth/totp/setup/"),
}


async def test_every_action_of_the_table_is_mapped() -> None:
    assert set(TABLE) == set(ACTIONS), (
        f"unmapped actions: {sorted(set(TABLE) - set(ACTIONS))}; "
        f"mapped but gone from TABLE: {sorted(set(ACTIONS) - set(TABLE))}")
    assert set(ROLES) == {r.value for r in Role}


CASES = [pytest.param(action, role, target, id=f"{action}-{role}-{target}")
         for action in TABLE if action in ACTIONS
         for role in ROLES
         for target in ACTIONS[action].targets]


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def dep(hq: Deployment) -> Deployment:
    """The module's HQ, plus per centre a candidate that object cases aim at, and a
    signed-in user: B's sessions and attempts exist, and refused force-logouts aim at these
    bystander sessions."""
    for code in ("A", "B"):
        await hq.add_user(f"target_{code.lower()}", "candidate", code)
        access, _ = await hq.api.tokens(name_of("invigilator", code))
        hq.notes[f"bystander-{code}"] = hq.node.ctx.auth.tokens.verify(
            access, "access").session_id
    return hq


@pytest.mark.parametrize(("action", "role", "target"), CASES)
async def test_table(dep: Deployment, action: str, role: str, target: str) -> None:
    actor = dep.user(role, "A")
    reach = TABLE[action].get(Role(role))
    await ACTIONS[action].run(dep, actor, target, reach)


@pytest.mark.parametrize("action", sorted(ACTIONS))
async def test_no_credentials_is_401_with_a_challenge(hq: Deployment, action: str) -> None:
    case = ACTIONS[action]
    for headers in ({}, {"Authorization": "Bearer"}, {"Authorization": "Basic cm9vdDpyb290"},
                    {"Authorization": "Bearer not-a-jwt"}):
        r = await hq.api.request(case.method, case.path, json_body={}, headers=headers)
        assert r.status == 401, (headers, r)
        assert r.headers["WWW-Authenticate"].startswith("Bearer"), r.headers
        assert r.body["code"] in ("not_authenticated", "token_not_valid"), r
