"""Candidate records ``candidates/<roll_no>`` in their centre's scope; eligibility.

Documents are stored one root key each (``doc:<id>``) so that two nodes adding
documents at once both keep theirs after the merge; the photo is one field.
Eligibility is derived on every save from the rules in ``[candidates]``,
unless a person decided it by hand (``eligibility_override``).
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from node.config import CandidatesSection
from node.errors import Conflict, NotFound, ValidationError
from node.services.auth.listing import apply_query
from node.services.auth.permissions import PermissionDenied, Principal, Reach, check, visible
from node.services.candidates.models import (
    CandidateIn,
    CandidatePatch,
    Eligibility,
)
from node.services.system import NodeContext

CANDIDATES = "candidates"
DOC_PREFIX = "doc:"
# Defaults that ``public`` fills in anyway: an import does not store them (smaller deltas).
EMPTY_DEFAULTS: dict[str, Any] = {
    "registration_no": "", "category": "", "address": "", "registered_exams": [],
    "phone": "", "status": "registered",
    "accommodations": {"extra_time_percent": 0, "scribe": False, "large_print": False,
                       "separate_room": False},
}
FIELDS = ("roll_no", "registration_no", "full_name", "date_of_birth", "gender", "category",
          "email", "phone", "address", "center", "registered_exams", "accommodations",
          "documents_verified", "fee_paid", "status")


def age_on(born: dt.date, day: dt.date) -> int:
    """Return the age in whole years on ``day``."""
    return day.year - born.year - ((day.month, day.day) < (born.month, born.day))


def evaluate(data: dict[str, Any], rules: CandidatesSection) -> tuple[str, list[str]]:
    """Return (eligibility status, reasons) of a candidate under ``rules``."""
    override = data.get("eligibility_override")
    if override:
        note = data.get("eligibility_note") or "decided by hand"
        return str(override), [note]
    reasons = []
    day = dt.date.fromisoformat(rules.age_reference_date) if rules.age_reference_date \
        else dt.date.today()
    dob = data.get("date_of_birth")
    if rules.min_age or rules.max_age:
        if not dob:
            reasons.append("date of birth missing")
        else:
            age = age_on(dt.date.fromisoformat(dob), day)
            if rules.min_age and age < rules.min_age:
                reasons.append(f"younger than {rules.min_age} on {day.isoformat()}")
            if rules.max_age and age > rules.max_age:
                reasons.append(f"older than {rules.max_age} on {day.isoformat()}")
    if rules.require_documents_verified and not data.get("documents_verified"):
        reasons.append("documents not verified")
    if rules.require_fee_paid and not data.get("fee_paid"):
        reasons.append("fee not paid")
    return (Eligibility.INELIGIBLE.value if reasons else Eligibility.ELIGIBLE.value), reasons


def stored_fields(body: CandidateIn | CandidatePatch) -> dict[str, Any]:
    """Return a model's fields as they are stored (dates as ISO text)."""
    data = body.model_dump(mode="json", exclude_unset=isinstance(body, CandidatePatch))
    return data


def public(data: dict[str, Any]) -> dict[str, Any]:
    """Return a candidate in the API's shape."""
    out = {k: data.get(k) for k in FIELDS}
    out["id"] = data["roll_no"]
    out.setdefault("registered_exams", [])
    out["registered_exams"] = out["registered_exams"] or []
    out["accommodations"] = out["accommodations"] or {
        "extra_time_percent": 0, "scribe": False, "large_print": False, "separate_room": False}
    for key, default in (("registration_no", ""), ("category", ""), ("phone", ""),
                         ("address", ""), ("gender", "undisclosed"), ("status", "registered")):
        if out.get(key) is None:
            out[key] = default
    out["eligibility"] = data.get("eligibility") or {
        "status": "pending", "reasons": [], "decided_by": "", "decided_at": 0}
    out["photo"] = data.get("photo")
    out["documents"] = sorted(
        ({"id": k[len(DOC_PREFIX):], **v} for k, v in data.items()
         if k.startswith(DOC_PREFIX) and isinstance(v, dict)),
        key=lambda d: d.get("uploaded_at", 0))
    out["updated_at"] = data.get("updated_at", 0)
    return out


class Candidates:
    """Candidate operations of one node."""

    def __init__(self, ctx: NodeContext) -> None:
        self.ctx = ctx
        self.store = ctx.store
        self.rules = ctx.config.candidates
        self._known_centers: set[str] = set()

    def raw(self, roll_no: str) -> dict[str, Any] | None:
        """Return a candidate's stored record, or None."""
        view = self.store.get(f"{CANDIDATES}/{roll_no}")
        return view.data if view is not None else None

    def in_reach(self, actor: Principal, action: str, roll_no: str) -> dict[str, Any]:
        """Return a candidate the actor may act on, else 404 (isolation) or 403."""
        reach = check(actor, action)
        data = self.raw(roll_no)
        if data is None or not visible(actor, reach, center=data.get("center")):
            raise NotFound("Not found.")
        return data

    def _own_center(self, actor: Principal | None, center: str) -> None:
        if actor is not None and actor.role.value != "admin" and center != actor.center:
            raise PermissionDenied("You may only manage candidates of your own centre.")
        if center in self._known_centers:
            return  # centres are never deleted: a positive answer stays true
        if self.store.get(f"centers/{center}") is not None:
            self._known_centers.add(center)
        else:
            raise ValidationError("Invalid input.", fields={"center": [f"Unknown centre "
                                                                       f"{center}."]})

    def _with_eligibility(self, current: dict[str, Any], changes: dict[str, Any],
                          who: str) -> dict[str, Any]:
        merged = {**current, **changes}
        status, reasons = evaluate(merged, self.rules)
        old = current.get("eligibility") or {}
        if old.get("status") != status or old.get("reasons") != reasons:
            changes["eligibility"] = {"status": status, "reasons": reasons,
                                      "decided_by": who or "rules",
                                      "decided_at": time.time()}
        return changes

    async def create(self, actor: Principal | None, body: CandidateIn) -> dict[str, Any]:
        """Create a candidate; 409 when the roll number exists."""
        if actor is not None:
            check(actor, "candidates.create")
        self._own_center(actor, body.center)
        key = f"{CANDIDATES}/{body.roll_no}"
        if self.store.get(key, include_deleted=True) is not None:
            raise Conflict("A candidate with that roll number already exists.",
                           fields={"roll_no": ["A candidate with that roll number already "
                                               "exists."]})
        who = actor.username if actor else ""
        fields = {**stored_fields(body), "updated_at": time.time(), "created_by": who}
        fields = self._with_eligibility({}, fields, "")
        result = await self.store.put(key, fields, scope=body.center, user=who)
        return public(result.view)

    def plan_upsert(self, actor: Principal | None,
                    body: CandidateIn) -> tuple[str, dict[str, Any], dict[str, Any]]:
        """Return (created|updated|unchanged, changes, current) for an import row.

        An existing candidate gets only the fields the row sets: a sheet with a few
        columns never resets the others.
        """
        existing = self.store.get(f"{CANDIDATES}/{body.roll_no}", include_deleted=True)
        if existing is not None and existing.deleted:
            raise ValidationError(f"roll number {body.roll_no} was deleted; it cannot be "
                                  "reused")
        if existing is None:
            self._own_center(actor, body.center)
            fields = {k: v for k, v in stored_fields(body).items()
                      if not (k in EMPTY_DEFAULTS and v == EMPTY_DEFAULTS[k])}
            return "created", fields, {}
        current = existing.data
        if current.get("center") != body.center:
            raise ValidationError(f"roll number {body.roll_no} is already used by another "
                                  "centre")
        fields = body.model_dump(mode="json", exclude_unset=True)
        if isinstance(fields.get("accommodations"), dict):
            fields["accommodations"] = {**(current.get("accommodations") or {}),
                                        **fields["accommodations"]}
        changes = {k: v for k, v in fields.items() if current.get(k) != v}
        return ("updated" if changes else "unchanged"), changes, current

    async def upsert(self, actor: Principal | None, body: CandidateIn) -> str:
        """Create or update from an import row; return created, updated or unchanged."""
        outcome, changes, current = self.plan_upsert(actor, body)
        if outcome == "unchanged":
            return outcome
        who = actor.username if actor else ""
        changes = self._with_eligibility(current, changes, "")
        changes["updated_at"] = time.time()
        await self.store.put(f"{CANDIDATES}/{body.roll_no}", changes, scope=body.center,
                             user=who)
        return outcome

    async def update(self, actor: Principal, roll_no: str,
                     body: CandidatePatch | CandidateIn) -> dict[str, Any]:
        """Change a candidate (PATCH some fields, PUT all editable ones)."""
        current = self.in_reach(actor, "candidates.update", roll_no)
        changes = stored_fields(body)
        if isinstance(body, CandidateIn):
            if body.roll_no != roll_no:
                raise ValidationError("Invalid input.", fields={"roll_no": [
                    "The roll number cannot change."]})
        if changes.get("center", current.get("center")) != current.get("center"):
            raise ValidationError("Invalid input.", fields={"center": [
                "A candidate cannot move to another centre here."]})
        if "eligibility_override" in changes and actor.role.value not in ("admin",
                                                                           "center_admin"):
            raise PermissionDenied("Only administrators decide eligibility by hand.")
        changes = {k: v for k, v in changes.items() if current.get(k) != v}
        if not changes:
            return public(current)
        changes = self._with_eligibility(current, changes, actor.username
                                         if "eligibility_override" in changes else "")
        changes["updated_at"] = time.time()
        result = await self.store.put(f"{CANDIDATES}/{roll_no}", changes, user=actor.username)
        return public(result.view)

    async def delete(self, actor: Principal, roll_no: str) -> None:
        """Delete (tombstone) a candidate."""
        self.in_reach(actor, "candidates.delete", roll_no)
        await self.store.delete(f"{CANDIDATES}/{roll_no}", user=actor.username)

    def read(self, actor: Principal, roll_no: str) -> dict[str, Any]:
        """Return one candidate in reach."""
        return public(self.in_reach(actor, "candidates.read", roll_no))

    def query(self, actor: Principal, query: dict[str, str],
              action: str = "candidates.list") -> list[dict[str, Any]]:
        """Return the candidates in reach, filtered, searched and ordered."""
        reach = check(actor, action)
        items = []
        for v in self.store.scan(CANDIDATES):
            if reach is Reach.ALL or visible(actor, reach, center=v.data.get("center")):
                item = public(v.data)
                item["eligibility_status"] = item["eligibility"]["status"]
                items.append(item)
        return apply_query(items, query, filters={"center", "status", "gender", "category",
                                                  "eligibility_status", "fee_paid",
                                                  "documents_verified"},
                           search=("roll_no", "registration_no", "full_name", "email", "phone"),
                           orderings={"roll_no", "full_name", "date_of_birth", "center",
                                      "updated_at", "registration_no"}, default="roll_no",
                           booleans=frozenset({"fee_paid", "documents_verified"}))

    async def revalidate(self) -> dict[str, int]:
        """Re-evaluate every candidate's eligibility (``examnode candidates validate``)."""
        counts = {"eligible": 0, "ineligible": 0, "changed": 0, "pending": 0}
        for v in list(self.store.scan(CANDIDATES)):
            changes = self._with_eligibility(v.data, {}, "")
            status = (changes.get("eligibility") or v.data.get("eligibility") or {}).get(
                "status", "pending")
            counts[status] = counts.get(status, 0) + 1
            if changes and self.ctx.trust is not None and \
                    self.ctx.trust.me.may_write(v.scope):
                await self.store.put(v.key, changes)
                counts["changed"] += 1
        return counts
