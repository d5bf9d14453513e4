"""Signing in across the cluster: sessions, tokens, lockout, second factor.

Sessions (``sessions/<id>``) and sign-in attempts (``login_attempts/<id>``)
are replicated records in the user's scope, so a token issued on one node
works on every node of the centre, a logout or forced logout on one node
holds on every node as soon as the record arrives (milliseconds on a hall
LAN), and failures on node A count towards a lockout on node B. Lockout
follows django-axes: too many failures per username or per client address
within a window lock for a while; an admin's unlock forgets earlier failures.
"""

from __future__ import annotations

import logging
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any

import pyotp

from node.errors import ExamnodeError, ValidationError
from node.services.auth import passwords
from node.services.auth.accounts import USERS, Accounts, public_user, user_scope
from node.services.auth.permissions import (
    NotAuthenticated,
    PermissionDenied,
    Principal,
    Role,
    check,
    visible,
)
from node.services.auth.tokens import Claims, TokenInvalid, TokenService
from node.services.system import NodeContext
from node.store import Store

log = logging.getLogger(__name__)

SESSIONS = "sessions"
ATTEMPTS = "login_attempts"
BAD_CREDENTIALS = "No active account found with the given credentials"
TOTP_ROLES = (Role.ADMIN, Role.CENTER_ADMIN)


class Locked(ExamnodeError):
    status = 403
    code = "locked"

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class OtpRequired(ExamnodeError):
    status = 401
    code = "otp_required"


def declare_indexes(store: Store) -> None:
    """Declare the secondary indexes sign-in needs (before the store opens)."""
    store.declare_index(ATTEMPTS, "username", lambda v: [v.get("username")])
    store.declare_index(ATTEMPTS, "address", lambda v: [v.get("address")])
    store.declare_index(SESSIONS, "username", lambda v: [v.get("username")])


@dataclass(frozen=True)
class Client:
    """Where a sign-in request comes from."""

    address: str
    user_agent: str


class SignIn:
    """Sign-in operations of one node."""

    def __init__(self, ctx: NodeContext, accounts: Accounts, tokens: TokenService) -> None:
        self.ctx = ctx
        self.store = ctx.store
        self.accounts = accounts
        self.tokens = tokens
        self.cfg = ctx.config.auth
        self._dummy: str | None = None

    # --- attempts and lockout ---------------------------------------------------------------

    def _node_scope(self) -> str:
        me = self.ctx.trust.me if self.ctx.trust else None
        return "global" if me is None or me.role == "hq" else me.center

    def _may_serve(self, user: dict[str, Any]) -> bool:
        """Return True when this node may open sessions for ``user`` (write its scope)."""
        me = self.ctx.trust.me if self.ctx.trust else None
        return me is None or me.may_write(user_scope(user["role"], user.get("center")))

    def _attempt_scope(self, user: dict[str, Any] | None) -> str:
        if user is not None and self._may_serve(user):
            return user_scope(user["role"], user.get("center"))
        return self._node_scope()

    async def _record(self, username: str, client: Client, outcome: str,
                      user: dict[str, Any] | None) -> None:
        await self.store.put(f"{ATTEMPTS}/{uuid.uuid4().hex}", {
            "username": username[:64], "address": client.address[:64],
            "user_agent": client.user_agent[:300], "node": self.ctx.node_id,
            "time": time.time(), "outcome": outcome,
            "center": user.get("center") if user else None,
        }, scope=self._attempt_scope(user))

    def _failures(self, index: str, value: str, since: float) -> list[float]:
        times = []
        for key in self.store.lookup(ATTEMPTS, index, value):
            view = self.store.get(key)
            if view is not None and view.data.get("outcome") == "failure" and \
                    view.data.get("time", 0) > since:
                times.append(float(view.data["time"]))
        return sorted(times)

    def locked_until(self, username: str, address: str | None,
                     now: float | None = None) -> float:
        """Return the time sign-in stays locked until (0 when not locked)."""
        now = time.time() if now is None else now
        user = self.accounts.get_user(username)
        unlocked = float(user.get("unlocked_at") or 0) if user else 0.0
        since = max(now - self.cfg.lockout_window - self.cfg.lockout_time, unlocked)
        until = 0.0
        lookups = [("username", username)] + ([("address", address)] if address else [])
        for index, value in lookups:
            times = self._failures(index, value, since)
            n = self.cfg.lockout_failures
            # Locked when n failures fall within one window; it lasts from the n-th.
            for i in range(len(times) - n + 1):
                if times[i + n - 1] - times[i] <= self.cfg.lockout_window:
                    until = max(until, times[i + n - 1] + self.cfg.lockout_time)
        return until if until > now else 0.0

    async def unlock(self, actor: Principal, username: str) -> dict[str, Any]:
        """Forget a user's failed sign-ins (admin)."""
        self.accounts.user_in_reach(actor, "users.unlock", username)
        result = await self.store.put(f"{USERS}/{username}", {"unlocked_at": time.time()},
                                      user=actor.username)
        return public_user(result.view)

    # --- sign in, refresh, out ---------------------------------------------------------------

    async def login(self, username: str, password: str, otp: str | None,
                    client: Client) -> dict[str, Any]:
        """Check credentials and open a session; return tokens and the user."""
        user = self.accounts.get_user(username)
        until = self.locked_until(username, client.address)
        if until:
            await self._record(username, client, "locked", user)
            retry = int(until - time.time()) + 1
            raise Locked(f"Account locked: too many failed sign-ins. Try again in {retry} s "
                         "or ask an administrator to unlock it.", retry)
        # An unknown user costs the same Argon2 work, so timing does not reveal who exists.
        stored = str(user.get("password_hash", "")) if user is not None \
            else await self._dummy_hash()
        ok = await passwords.verify_password(stored, password) and user is not None
        if user is None or not ok or not user.get("is_active", False):
            await self._record(username, client, "failure", user)
            raise NotAuthenticated(BAD_CREDENTIALS)
        if not self._may_serve(user):
            # Tokens are honoured only from nodes that may write the user's scope, so a
            # centre machine cannot vouch for an HQ account (see ``authenticate``).
            await self._record(username, client, "wrong_node", user)
            raise PermissionDenied("This account belongs to HQ: sign in on an HQ node.")
        role = Role(user["role"])
        needs_otp = bool(user.get("totp_enabled")) or (
            self.cfg.require_totp_for_admins and role in TOTP_ROLES)
        if needs_otp:
            if not user.get("totp_enabled"):
                await self._record(username, client, "otp_not_enrolled", user)
                raise OtpRequired("A second factor is required for this account but none is "
                                  "enrolled: run 'examnode totp --data DIR --username NAME' on "
                                  "the node (stopped) to enrol one.")
            if otp is None:
                raise OtpRequired("Enter the 6-digit code from your authenticator app.")
            step = totp_step(user["totp_secret"], otp)
            if step is None or step <= int(user.get("totp_last_step") or 0):
                await self._record(username, client, "failure", user)
                raise NotAuthenticated("The second-factor code is not valid.")
            await self.store.put(f"{USERS}/{username}", {"totp_last_step": step}, user=username)
        session_id = uuid.uuid4().hex
        now = time.time()
        await self.store.put(f"{SESSIONS}/{session_id}", {
            "session_id": session_id, "username": username, "role": role.value,
            "center": user.get("center"), "node": self.ctx.node_id, "created": now,
            "expires": now + self.cfg.refresh_ttl, "last_refresh": now, "generation": 0,
            "revoked": False, "address": client.address[:64],
            "user_agent": client.user_agent[:300],
        }, scope=user_scope(role, user.get("center")), user=username)
        await self._record(username, client, "success", user)
        return {**self._issue(user, session_id, 0),
                "user": public_user(user)}

    def _issue(self, user: dict[str, Any], session_id: str, generation: int) -> dict[str, str]:
        common = {"username": user["username"], "role": user["role"],
                  "center": user.get("center"), "session_id": session_id}
        return {
            "access": self.tokens.issue(kind="access", ttl=self.cfg.access_ttl, **common),
            "refresh": self.tokens.issue(kind="refresh", ttl=self.cfg.refresh_ttl,
                                         generation=generation, **common),
        }

    def _live_session(self, session_id: str) -> dict[str, Any]:
        view = self.store.get(f"{SESSIONS}/{session_id}")
        if view is None or view.data.get("revoked") or view.data.get("expires", 0) < time.time():
            raise TokenInvalid("Session has ended; sign in again.")
        return view.data

    async def refresh(self, token: str) -> dict[str, str]:
        """Rotate a refresh token; a reused old one ends the session."""
        claims = self.tokens.verify(token, "refresh")
        self._check_claims(claims)
        session = self._live_session(claims.session_id)
        if claims.generation != session.get("generation", 0):
            await self._revoke(session, by="", reason="refresh token reused")
            log.warning("refresh token reuse for session %s of %s: session ended",
                        claims.session_id, claims.username)
            raise TokenInvalid("Refresh token was already used; the session is ended.")
        user = self.accounts.get_user(claims.username)
        if user is None or not user.get("is_active"):
            raise TokenInvalid("User is inactive or deleted.")
        generation = claims.generation + 1
        await self.store.put(f"{SESSIONS}/{claims.session_id}", {
            "generation": generation, "last_refresh": time.time()}, user=claims.username)
        return self._issue(user, claims.session_id, generation)

    async def logout(self, token: str) -> None:
        """End the session of a refresh token."""
        claims = self.tokens.verify(token, "refresh")
        view = self.store.get(f"{SESSIONS}/{claims.session_id}")
        if view is not None and not view.data.get("revoked"):
            await self._revoke(view.data, by=claims.username, reason="logout")

    async def _revoke(self, session: dict[str, Any], *, by: str, reason: str) -> None:
        await self.store.put(f"{SESSIONS}/{session['session_id']}", {
            "revoked": True, "revoked_at": time.time(), "revoked_by": by, "reason": reason},
            user=by)

    async def force_logout(self, actor: Principal, username: str | None,
                           session_id: str | None, reason: str) -> int:
        """End the sessions of a user, or one session; return how many ended."""
        reach = check(actor, "sessions.force_logout")
        if bool(username) == bool(session_id):
            raise ValidationError("Give either username or session_id.", fields={
                "non_field_errors": ["Give either username or session_id."]})
        if username:
            keys = self.store.lookup(SESSIONS, "username", username)
        else:
            keys = [f"{SESSIONS}/{session_id}"]
        ended = 0
        found = False
        for key in keys:
            view = self.store.get(key)
            if view is None or not visible(actor, reach, center=view.data.get("center")):
                continue
            found = True
            if not view.data.get("revoked"):
                await self._revoke(view.data, by=actor.username, reason=reason or "forced")
                ended += 1
        if not found and session_id:
            from node.errors import NotFound

            raise NotFound("Not found.")
        return ended

    # --- requests ---------------------------------------------------------------------------

    def authenticate(self, token: str) -> Principal:
        """Return the principal of a valid access token (checked on every request)."""
        claims = self.tokens.verify(token, "access")
        user = self._check_claims(claims)
        return Principal(claims.username, Role(user["role"]), user.get("center"),
                         claims.session_id)

    def _check_claims(self, claims: Claims) -> dict[str, Any]:
        """Check a token against its session, its user and its issuing node."""
        session = self._live_session(claims.session_id)
        if session.get("username") != claims.username:
            raise TokenInvalid("Token does not belong to its session.")
        user = self.accounts.get_user(claims.username)
        if user is None or not user.get("is_active"):
            raise TokenInvalid("User is inactive or deleted.")
        policy = self.ctx.policy
        issuer = policy.cert_of(claims.issuer) if policy is not None else None
        if policy is not None and (issuer is None or not issuer.may_write(
                user_scope(user["role"], user.get("center")))):
            raise TokenInvalid("Token was issued by a node that may not vouch for this user.")
        return user

    # --- lists ------------------------------------------------------------------------------

    def sessions(self, actor: Principal) -> list[dict[str, Any]]:
        """Return the sessions in reach, newest first."""
        reach = check(actor, "sessions.list")
        out = [dict(v.data) for v in self.store.scan(SESSIONS)
               if visible(actor, reach, center=v.data.get("center"),
                          username=v.data.get("username"))]
        now = time.time()
        for s in out:
            s["active"] = not s.get("revoked") and s.get("expires", 0) > now
            s["id"] = s["session_id"]
        return sorted(out, key=lambda s: s.get("created", 0), reverse=True)

    def attempts(self, actor: Principal) -> list[dict[str, Any]]:
        """Return the sign-in attempts in reach, newest first."""
        reach = check(actor, "login_attempts.list")
        out = [{"id": v.key.split("/", 1)[1], **v.data} for v in self.store.scan(ATTEMPTS)
               if visible(actor, reach, center=v.data.get("center"))]
        return sorted(out, key=lambda a: a.get("time", 0), reverse=True)

    async def cleanup(self, *, keep_days: float = 30.0) -> int:
        """Delete sessions that ended more than a day ago; return how many."""
        now = time.time()
        removed = 0
        for view in list(self.store.scan(SESSIONS)):
            ended = view.data.get("revoked_at") if view.data.get("revoked") else \
                view.data.get("expires", 0)
            if ended and ended < now - 86400:
                await self.store.delete(view.key)
                removed += 1
        for view in list(self.store.scan(ATTEMPTS)):
            if view.data.get("time", now) < now - keep_days * 86400:
                await self.store.delete(view.key)
                removed += 1
        return removed

    # --- second factor ----------------------------------------------------------------------

    async def totp_setup(self, actor: Principal, otp: str | None = None) -> dict[str, str]:
        """Start enrolling a TOTP second factor; confirm with ``totp_confirm``.

        Replacing an enrolled factor needs a current code from it.
        """
        check(actor, "totp.setup")
        user = self.accounts.get_user(actor.username) or {}
        if user.get("totp_enabled"):
            step = totp_step(user["totp_secret"], otp or "")
            if step is None or step <= int(user.get("totp_last_step") or 0):
                raise ValidationError("A current code of the enrolled factor is needed.",
                                      fields={"otp": ["Enter the current code."]})
        secret = pyotp.random_base32()
        await self.store.put(f"{USERS}/{actor.username}", {"totp_pending": secret},
                             user=actor.username)
        uri = pyotp.TOTP(secret).provisioning_uri(name=actor.username, issuer_name="examnode")
        return {"secret": secret, "otpauth_uri": uri}

    async def totp_confirm(self, actor: Principal, otp: str) -> None:
        """Enable the pending TOTP factor once a code from it verifies."""
        check(actor, "totp.setup")
        user = self.accounts.get_user(actor.username) or {}
        pending = user.get("totp_pending")
        step = totp_step(pending, otp) if pending else None
        if step is None:
            raise ValidationError("Invalid code.", fields={"otp": ["The code is not valid."]})
        await self.store.put(f"{USERS}/{actor.username}", {
            "totp_secret": pending, "totp_pending": None, "totp_enabled": True,
            "totp_last_step": step}, user=actor.username)

    async def _dummy_hash(self) -> str:
        if self._dummy is None:
            self._dummy = await passwords.hash_password(secrets.token_urlsafe(16))
        return self._dummy

    async def end_sessions(self, username: str, *, keep: str | None, reason: str) -> int:
        """End a user's live sessions except ``keep`` (after a password change)."""
        ended = 0
        for key in self.store.lookup(SESSIONS, "username", username):
            view = self.store.get(key)
            if view is None or view.data.get("revoked") or view.data.get("session_id") == keep:
                continue
            if not self.ctx.trust or self.ctx.trust.me.may_write(view.scope):
                await self._revoke(view.data, by=username, reason=reason)
                ended += 1
        return ended


def totp_step(secret: str, otp: str, now: float | None = None) -> int | None:
    """Return the time step a code belongs to (±1 step of clock drift), or None."""
    if not otp.isdigit() or len(otp) != 6:
        return None
    totp = pyotp.TOTP(secret)
    now = time.time() if now is None else now
    for drift in (0, -1, 1):
        at = now + drift * totp.interval
        if totp.at(at) == otp:
            return int(at // totp.interval)
    return None


def new_password() -> str:
    """Return a generated password for a first admin."""
    return secrets.token_urlsafe(12)
