"""The one permission table: which role may do what, and on whose objects.

Every endpoint names an action; ``check`` is the only place that decides.
Centre isolation is object-level: for a role whose rule is ``own centre``, an
object of another centre does not exist (404), in lists and by id.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from node.errors import ExamnodeError


class Role(StrEnum):
    ADMIN = "admin"
    CENTER_ADMIN = "center_admin"
    INVIGILATOR = "invigilator"
    EVALUATOR = "evaluator"
    CANDIDATE = "candidate"


ROLES = tuple(Role)


class Reach(StrEnum):
    """How far an allowed role reaches."""

    ALL = "all"  # every centre
    CENTER = "own centre"  # objects of the actor's centre only
    SELF = "self"  # only the actor's own user / sessions


class PermissionDenied(ExamnodeError):
    status = 403
    code = "permission_denied"


class NotAuthenticated(ExamnodeError):
    status = 401
    code = "not_authenticated"


A, C, V, E, K = (Role.ADMIN, Role.CENTER_ADMIN, Role.INVIGILATOR, Role.EVALUATOR,
                 Role.CANDIDATE)

# action -> {role: reach}. A role that is absent gets 403.
TABLE: dict[str, dict[Role, Reach]] = {
    "users.list": {A: Reach.ALL, C: Reach.CENTER},
    "users.create": {A: Reach.ALL, C: Reach.CENTER},
    "users.read": {A: Reach.ALL, C: Reach.CENTER, V: Reach.SELF, E: Reach.SELF, K: Reach.SELF},
    "users.update": {A: Reach.ALL, C: Reach.CENTER, V: Reach.SELF, E: Reach.SELF,
                     K: Reach.SELF},
    "users.delete": {A: Reach.ALL, C: Reach.CENTER},
    "users.unlock": {A: Reach.ALL, C: Reach.CENTER},
    "centers.list": {A: Reach.ALL, C: Reach.CENTER, V: Reach.CENTER, E: Reach.CENTER,
                     K: Reach.CENTER},
    "centers.create": {A: Reach.ALL},
    "centers.read": {A: Reach.ALL, C: Reach.CENTER, V: Reach.CENTER, E: Reach.CENTER,
                     K: Reach.CENTER},
    "centers.update": {A: Reach.ALL},
    "sessions.list": {A: Reach.ALL, C: Reach.CENTER, V: Reach.SELF, E: Reach.SELF,
                      K: Reach.SELF},
    "sessions.force_logout": {A: Reach.ALL, C: Reach.CENTER},
    "login_attempts.list": {A: Reach.ALL, C: Reach.CENTER},
    "system.status": {A: Reach.ALL, C: Reach.CENTER},
    "audit.list": {A: Reach.ALL, C: Reach.CENTER},
    "totp.setup": {A: Reach.SELF, C: Reach.SELF, V: Reach.SELF, E: Reach.SELF},
    "candidates.list": {A: Reach.ALL, C: Reach.CENTER, V: Reach.CENTER},
    "candidates.read": {A: Reach.ALL, C: Reach.CENTER, V: Reach.CENTER},
    "candidates.create": {A: Reach.ALL, C: Reach.CENTER},
    "candidates.update": {A: Reach.ALL, C: Reach.CENTER},
    "candidates.delete": {A: Reach.ALL, C: Reach.CENTER},
    "candidates.files": {A: Reach.ALL, C: Reach.CENTER},
    "candidates.import": {A: Reach.ALL, C: Reach.CENTER},
    "candidates.export": {A: Reach.ALL, C: Reach.CENTER},
}

# Who may create (register) or give which role. Centre admins stay inside their centre.
CREATABLE: dict[Role, set[Role]] = {
    A: set(Role),
    C: {V, K},
}


@dataclass(frozen=True)
class Principal:
    """The authenticated actor of a request."""

    username: str
    role: Role
    center: str | None
    session_id: str


def check(principal: Principal | None, action: str) -> Reach:
    """Return how far ``principal`` may do ``action``; raise 401/403 otherwise."""
    if principal is None:
        raise NotAuthenticated("Authentication credentials were not provided.")
    reach = TABLE[action].get(principal.role)
    if reach is None:
        raise PermissionDenied("You do not have permission to perform this action.")
    return reach


def visible(principal: Principal, reach: Reach, *, center: str | None,
            username: str | None = None) -> bool:
    """Return True when an object (of ``center``, owned by ``username``) is in reach."""
    if reach is Reach.ALL:
        return True
    if reach is Reach.CENTER:
        return center is not None and center == principal.center
    return username is not None and username == principal.username


def may_create(actor: Role, target: Role) -> bool:
    """Return True when ``actor`` may create or promote a user to ``target``."""
    return target in CREATABLE.get(actor, set())


def render_markdown() -> str:
    """Return the permission table as Markdown (README, generated from TABLE)."""
    head = "| action | " + " | ".join(r.value for r in ROLES) + " |"
    sep = "|---|" + "---|" * len(ROLES)
    rows = [head, sep]
    for action, rules in TABLE.items():
        cells = [rules[r].value if r in rules else "-" for r in ROLES]
        rows.append(f"| `{action}` | " + " | ".join(cells) + " |")
    return "\n".join(rows)
