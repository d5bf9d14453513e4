"""Users and centres: records ``users/<username>`` and ``centers/<code>``.

A user lives in the scope of its centre (admins and centre-less evaluators
in ``global``), so a centre's users travel only to that centre and HQ. A
centre record is ``global``. Every read passes through the permission table.
"""

from __future__ import annotations

import time
from typing import Any

from node.errors import Conflict, NotFound, ValidationError
from node.services.auth import passwords
from node.services.auth.listing import apply_query
from node.services.auth.models import (
    CenterCreate,
    CenterPut,
    CenterUpdate,
    UserCreate,
    UserPut,
    UserUpdate,
    drop_none,
)
from node.services.auth.permissions import (
    PermissionDenied,
    Principal,
    Reach,
    Role,
    check,
    may_create,
    visible,
)
from node.services.system import NodeContext

USERS = "users"
CENTERS = "centers"
GLOBAL = "global"
SECRET_FIELDS = ("password_hash", "totp_secret", "totp_pending")


def user_scope(role: Role | str, center: str | None) -> str:
    """Return the scope a user record lives in."""
    return center if center else GLOBAL


def public_user(data: dict[str, Any], locked: bool = False) -> dict[str, Any]:
    """Return a user without its secrets, in the API's shape."""
    out = {k: v for k, v in data.items() if k not in SECRET_FIELDS and not k.startswith("_")}
    out.setdefault("full_name", "")
    out.setdefault("email", None)
    out.setdefault("center", None)
    out["totp_enabled"] = bool(data.get("totp_enabled"))
    out["locked"] = locked
    out["id"] = data["username"]
    return {k: out.get(k) for k in ("id", "username", "role", "center", "full_name", "email",
                                    "is_active", "totp_enabled", "date_joined", "locked")}


def public_center(data: dict[str, Any]) -> dict[str, Any]:
    """Return a centre in the API's shape."""
    keys = ("code", "name", "address", "city", "capacity", "contact_email", "contact_phone",
            "is_active", "created_at")
    out = {k: data.get(k) for k in keys}
    out["id"] = data["code"]
    return out


class Accounts:
    """User and centre operations of one node."""

    def __init__(self, ctx: NodeContext) -> None:
        self.ctx = ctx
        self.store = ctx.store
        self.cfg = ctx.config.auth

    # --- users -----------------------------------------------------------------------------

    def get_user(self, username: str) -> dict[str, Any] | None:
        """Return a user's full record (with secrets), or None."""
        view = self.store.get(f"{USERS}/{username}")
        return view.data if view is not None else None

    def user_in_reach(self, actor: Principal, action: str, username: str) -> dict[str, Any]:
        reach = check(actor, action)
        data = self.get_user(username)
        if data is None or not visible(actor, reach, center=data.get("center"),
                                       username=username):
            raise NotFound("Not found.")
        return data

    def _check_center(self, center: str | None, role: Role) -> None:
        if role is Role.ADMIN:
            if center:
                raise ValidationError("Invalid input.", fields={
                    "center": ["An admin belongs to no centre."]})
            return
        if role is not Role.EVALUATOR and not center:
            raise ValidationError("Invalid input.", fields={
                "center": [f"A {role.value} needs a centre."]})
        if center and self.store.get(f"{CENTERS}/{center}") is None:
            raise ValidationError("Invalid input.", fields={
                "center": [f"Unknown centre {center}."]})

    def _may_assign(self, actor: Principal, role: Role, center: str | None) -> None:
        if not may_create(actor.role, role):
            raise PermissionDenied(f"A {actor.role.value} may not create or assign "
                                   f"the role {role.value}.")
        if actor.role is not Role.ADMIN and center != actor.center:
            raise PermissionDenied("You may only manage users of your own centre.")

    async def create_user(self, actor: Principal | None, body: UserCreate) -> dict[str, Any]:
        """Create a user (register); ``actor`` None means the node operator (CLI)."""
        if actor is not None:
            check(actor, "users.create")
            self._may_assign(actor, body.role, body.center)
        self._check_center(body.center, body.role)
        passwords.check_policy(body.password, min_length=self.cfg.password_min_length,
                               username=body.username)
        key = f"{USERS}/{body.username}"
        if self.store.get(key, include_deleted=True) is not None:
            raise Conflict("A user with that username already exists.",
                           fields={"username": ["A user with that username already exists."]})
        record = {
            "username": body.username, "role": body.role.value, "center": body.center,
            "full_name": body.full_name, "email": body.email, "is_active": body.is_active,
            "password_hash": await passwords.hash_password(body.password),
            "totp_enabled": False, "date_joined": time.time(),
            "created_by": actor.username if actor else "",
        }
        result = await self.store.put(key, record, scope=user_scope(body.role, body.center),
                                      user=actor.username if actor else "")
        return public_user(result.view)

    async def update_user(self, actor: Principal, username: str,
                          body: UserUpdate | UserPut) -> dict[str, Any]:
        """Change a user (PUT replaces the editable fields, PATCH sets some)."""
        current = self.user_in_reach(actor, "users.update", username)
        changes = drop_none(body.model_dump(mode="json"))
        if isinstance(body, UserPut):
            changes.setdefault("email", None)
            changes.setdefault("center", None)
        is_self = username == actor.username
        reach = check(actor, "users.update")
        if reach is Reach.SELF or (is_self and actor.role is not Role.ADMIN):
            forbidden = {"role", "center", "is_active"} & {
                k for k, v in changes.items() if v != current.get(k)}
            if forbidden:
                names = ", ".join(sorted(forbidden))
                raise PermissionDenied(f"You may not change your own {names}.")
        elif actor.role is not Role.ADMIN:
            self._may_assign(actor, Role(current["role"]), current.get("center"))
        role = Role(changes.get("role", current["role"]))
        center = changes.get("center", current.get("center"))
        if not is_self or actor.role is Role.ADMIN:
            if role.value != current["role"] or center != current.get("center"):
                if actor.role is not Role.ADMIN:
                    self._may_assign(actor, role, center)
        if center != current.get("center"):
            # A record's scope is fixed at creation (DESIGN.md s6): moving a user between
            # centres would mean copy-and-tombstone; not offered through this endpoint.
            raise ValidationError("Invalid input.", fields={
                "center": ["A user cannot move to another centre; create a new account."]})
        self._check_center(center, role)
        password = changes.pop("password", None)
        if password is not None:
            passwords.check_policy(password, min_length=self.cfg.password_min_length,
                                   username=username)
            changes["password_hash"] = await passwords.hash_password(password)
        changes["role"] = role.value
        result = await self.store.put(f"{USERS}/{username}", changes, user=actor.username)
        return public_user(result.view)

    async def delete_user(self, actor: Principal, username: str) -> None:
        """Delete (tombstone) a user; its sessions end."""
        current = self.user_in_reach(actor, "users.delete", username)
        if username == actor.username:
            raise PermissionDenied("You may not delete your own account.")
        if actor.role is not Role.ADMIN:
            self._may_assign(actor, Role(current["role"]), current.get("center"))
        await self.store.delete(f"{USERS}/{username}", user=actor.username)

    def read_user(self, actor: Principal, username: str, locked: bool) -> dict[str, Any]:
        """Return one user in reach."""
        return public_user(self.user_in_reach(actor, "users.read", username), locked)

    def list_users(self, actor: Principal, query: dict[str, str],
                   locked: Any = None) -> list[dict[str, Any]]:
        """Return the users in reach, filtered, searched and ordered.

        ``locked(username) -> bool`` fills each user's ``locked`` flag.
        """
        reach = check(actor, "users.list")
        items = [public_user(v.data, bool(locked and locked(v.data["username"])))
                 for v in self.store.scan(USERS)
                 if visible(actor, reach, center=v.data.get("center"),
                            username=v.data.get("username"))]
        return apply_query(items, query, filters={"center", "role", "is_active"},
                           search=("username", "full_name", "email"),
                           orderings={"username", "full_name", "role", "center",
                                      "date_joined", "email"}, default="username")

    # --- centres ---------------------------------------------------------------------------

    def _center_in_reach(self, actor: Principal, action: str, code: str) -> dict[str, Any]:
        reach = check(actor, action)
        view = self.store.get(f"{CENTERS}/{code}")
        if view is None or not visible(actor, reach, center=code):
            raise NotFound("Not found.")
        return view.data

    async def create_center(self, actor: Principal | None, body: CenterCreate) -> dict[str, Any]:
        """Create a centre (global record)."""
        if actor is not None:
            check(actor, "centers.create")
        if body.code == GLOBAL:
            raise ValidationError("Invalid input.", fields={"code": ["Reserved code."]})
        key = f"{CENTERS}/{body.code}"
        if self.store.get(key, include_deleted=True) is not None:
            raise Conflict("A centre with that code already exists.",
                           fields={"code": ["A centre with that code already exists."]})
        record = {**body.model_dump(mode="json"), "created_at": time.time()}
        result = await self.store.put(key, record, scope=GLOBAL,
                                      user=actor.username if actor else "")
        return public_center(result.view)

    async def update_center(self, actor: Principal, code: str,
                            body: CenterUpdate | CenterPut) -> dict[str, Any]:
        """Change a centre."""
        self._center_in_reach(actor, "centers.update", code)
        changes = drop_none(body.model_dump(mode="json"))
        if isinstance(body, CenterPut):
            changes.setdefault("contact_email", None)
        result = await self.store.put(f"{CENTERS}/{code}", changes, user=actor.username)
        return public_center(result.view)

    def read_center(self, actor: Principal, code: str) -> dict[str, Any]:
        """Return one centre in reach."""
        return public_center(self._center_in_reach(actor, "centers.read", code))

    def list_centers(self, actor: Principal, query: dict[str, str]) -> list[dict[str, Any]]:
        """Return the centres in reach."""
        reach = check(actor, "centers.list")
        items = [public_center(v.data) for v in self.store.scan(CENTERS)
                 if visible(actor, reach, center=v.data.get("code"))]
        return apply_query(items, query, filters={"is_active", "city"},
                           search=("code", "name", "city"),
                           orderings={"code", "name", "city", "capacity", "created_at"},
                           default="code")
