"""Candidate records through the API: create, read, change, delete, list; eligibility.

One standalone centre DEMO node for the module; every test uses roll numbers of
its own (a prefix), so that tests can filter the shared list by ``?search=``.
"""

from __future__ import annotations

import unicodedata

import pytest

from tests.candidates.conftest import Site, candidate, create

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def test_create_read_and_leading_zeros(site: Site) -> None:
    r = await site.admin.post("/api/candidates/", candidate(
        "00123", full_name="  Priya   Sharma ", phone="+91 98765 43210",
        registered_exams=["MATH-1", "PHY-2"], accommodations={"extra_time_percent": 25}))
    assert r.status == 201, r
    assert r.body["roll_no"] == r.body["id"] == "00123"
    assert r.body["full_name"] == "Priya Sharma"  # whitespace collapsed
    assert r.body["accommodations"]["extra_time_percent"] == 25
    got = await site.admin.get("/api/candidates/00123/")
    assert got.status == 200 and got.body["roll_no"] == "00123", got
    assert got.body["registered_exams"] == ["MATH-1", "PHY-2"]
    # The roll number is text: 123 is another candidate, which does not exist.
    assert (await site.admin.get("/api/candidates/123/")).status == 404


async def test_duplicate_roll_number_is_a_conflict(site: Site) -> None:
    await create(site.admin, "DUP-1", full_name="First Person")
    before = site.log_entries()
    r = await site.admin.post("/api/candidates/", candidate("DUP-1", full_name="Second"))
    assert r.status == 409 and r.body["code"] == "conflict", r
    assert "roll_no" in r.body, r
    assert (await site.admin.get("/api/candidates/DUP-1/")).body["full_name"] == "First Person"
    assert site.log_entries() == before


async def test_patch_put_and_delete(site: Site) -> None:
    await create(site.admin, "CH-1", phone="12345", category="GEN")
    r = await site.admin.patch("/api/candidates/CH-1/", {"phone": "+91 11111 22222",
                                                         "full_name": "Chan  Ge"})
    assert r.status == 200, r
    assert r.body["phone"] == "+91 11111 22222" and r.body["full_name"] == "Chan Ge"
    assert r.body["category"] == "GEN"  # untouched by PATCH

    full = candidate("CH-1", full_name="Put Person", gender="male", address="12 Main Road")
    r = await site.admin.put("/api/candidates/CH-1/", full)
    assert r.status == 200, r
    assert (r.body["full_name"], r.body["gender"], r.body["address"]) == (
        "Put Person", "male", "12 Main Road")
    assert r.body["category"] == "" and r.body["phone"] == ""  # PUT replaces every field

    # The roll number and the centre cannot change.
    r = await site.admin.put("/api/candidates/CH-1/", candidate("CH-2"))
    assert r.status == 400 and "roll_no" in r.body, r
    r = await site.admin.patch("/api/candidates/CH-1/", {"center": "OTHER"})
    assert r.status == 400 and "center" in r.body, r

    assert (await site.admin.delete("/api/candidates/CH-1/")).status == 204
    assert (await site.admin.get("/api/candidates/CH-1/")).status == 404
    assert (await site.admin.patch("/api/candidates/CH-1/", {"phone": "1"})).status == 404
    assert (await site.admin.delete("/api/candidates/CH-1/")).status == 404
    assert not await site.admin.all("/api/candidates/?search=CH-1")


@pytest.mark.parametrize(("body", "bad_fields"), [
    ({"nickname": "Ace"}, {"nickname"}),
    ({"date_of_birth": "yesterday"}, {"date_of_birth"}),
    ({"date_of_birth": "2090-01-01"}, {"date_of_birth"}),
    ({"fee_paid": "maybe", "gender": "robot"}, {"fee_paid", "gender"}),
    ({"accommodations": {"extra_time_percent": "lots"}}, {"accommodations.extra_time_percent"}),
    ({"accommodations": {"wheelchair": True}}, {"accommodations.wheelchair"}),
    ({"email": "not-an-email"}, {"email"}),
    ({"roll_no": "12 3"}, {"roll_no"}),
    ({"roll_no": 123}, {"roll_no"}),
    ({"full_name": "   "}, {"full_name"}),
    ({"phone": "call me"}, {"phone"}),
    ({"center": "NOPE"}, {"center"}),
])
async def test_bad_input_is_a_400_with_field_errors_and_writes_nothing(
        site: Site, body: dict[str, object], bad_fields: set[str]) -> None:
    before = site.log_entries()
    payload = candidate("BAD-1") | body
    r = await site.admin.post("/api/candidates/", payload)
    assert r.status == 400 and r.body["code"] == "invalid", r
    assert bad_fields <= set(r.body), r
    assert (await site.admin.get(f"/api/candidates/{payload['roll_no']}/")).status == 404
    assert site.log_entries() == before


async def test_bad_patch_changes_nothing(site: Site) -> None:
    await create(site.admin, "BADP-1")
    before = site.log_entries()
    for body in ({"nickname": "x"}, {"fee_paid": "maybe"}, {"status": "asleep"},
                 {"gender": "m", "phone": "12"}, {"roll_no": "BADP-2"}):
        r = await site.admin.patch("/api/candidates/BADP-1/", body)
        assert r.status == 400 and r.body["code"] == "invalid", (body, r)
    r = await site.admin.get("/api/candidates/BADP-1/")
    assert r.body["gender"] == "female" and r.body["phone"] == "", r
    assert site.log_entries() == before


# --- lists -----------------------------------------------------------------------------------

PEOPLE = [  # roll, name, gender, status, fee_paid
    ("LS-01", "अनन्या शर्मा", "female", "registered", True),
    ("LS-02", "فاطمة الزهراء", "female", "active", False),
    ("LS-03", "José Ñúñez", "male", "withdrawn", True),
    ("LS-04", "Zoë Ångström", "other", "registered", False),
    ("LS-05", "Ravi Kumar", "male", "registered", True),
]


async def _seed(site: Site) -> None:
    if (await site.admin.get("/api/candidates/LS-01/")).status == 200:
        return
    for roll, name, gender, status, fee in PEOPLE:
        await create(site.admin, roll, full_name=name, gender=gender, status=status,
                     fee_paid=fee)


async def rolls(site: Site, query: str) -> list[str]:
    return [c["roll_no"] for c in await site.admin.all(f"/api/candidates/?search=LS-&{query}")]


async def test_list_filters(site: Site) -> None:
    await _seed(site)
    assert await rolls(site, "") == ["LS-01", "LS-02", "LS-03", "LS-04", "LS-05"]
    assert await rolls(site, "center=DEMO") == ["LS-01", "LS-02", "LS-03", "LS-04", "LS-05"]
    assert await rolls(site, "center=ELSEWHERE") == []
    assert await rolls(site, "status=registered") == ["LS-01", "LS-04", "LS-05"]
    assert await rolls(site, "gender=male") == ["LS-03", "LS-05"]
    assert await rolls(site, "fee_paid=true") == ["LS-01", "LS-03", "LS-05"]
    assert await rolls(site, "fee_paid=false") == ["LS-02", "LS-04"]
    assert await rolls(site, "eligibility_status=eligible") == ["LS-01", "LS-03", "LS-05"]
    assert await rolls(site, "eligibility_status=ineligible&gender=female") == ["LS-02"]
    r = await site.admin.get("/api/candidates/?fee_paid=perhaps")
    assert r.status == 400 and "fee_paid" in r.body, r


@pytest.mark.parametrize(("term", "expected"), [
    ("शर्मा", ["LS-01"]),  # Devanagari
    ("الزهراء", ["LS-02"]),  # Arabic
    ("ñúñez", ["LS-03"]),  # accented, other case
    ("JOSÉ", ["LS-03"]),
    ("ångström", ["LS-04"]),
    ("kumar", ["LS-05"]),
])
async def test_search_in_any_script(site: Site, term: str, expected: list[str]) -> None:
    await _seed(site)
    got = [c["roll_no"] for c in await site.admin.all(f"/api/candidates/?search={term}")]
    assert got == expected


async def test_search_matches_decomposed_accents(site: Site) -> None:
    """Names are stored NFC; a term typed as NFD (macOS, some keyboards) must match too.

    Bug: node/services/auth/listing.py apply_query lowercases the term but does not
    NFC-normalise it (models.clean_text normalises stored names), so 'Ñúñez' typed
    decomposed finds nothing.
    """
    await _seed(site)
    term = unicodedata.normalize("NFD", "Ñúñez")
    got = [c["roll_no"] for c in await site.admin.all(f"/api/candidates/?search={term}")]
    assert got == ["LS-03"]


async def test_ordering_and_pagination(site: Site) -> None:
    await _seed(site)
    assert await rolls(site, "ordering=-roll_no") == ["LS-05", "LS-04", "LS-03", "LS-02",
                                                      "LS-01"]
    by_name = await rolls(site, "ordering=full_name")
    names = {roll: name for roll, name, *_ in PEOPLE}
    assert [names[r] for r in by_name] == sorted(names.values())
    r = await site.admin.get("/api/candidates/?ordering=password")
    assert r.status == 400 and "ordering" in r.body, r

    r = await site.admin.get("/api/candidates/?search=LS-&page_size=2")
    assert r.status == 200 and r.body["count"] == 5, r
    assert [c["roll_no"] for c in r.body["results"]] == ["LS-01", "LS-02"]
    assert r.body["previous"] is None and "page=2" in r.body["next"]
    r = await site.admin.get("/api/candidates/?search=LS-&page_size=2&page=3")
    assert [c["roll_no"] for c in r.body["results"]] == ["LS-05"] and r.body["next"] is None
    assert (await site.admin.get("/api/candidates/?search=LS-&page_size=2&page=4")).status == 404


# --- eligibility -----------------------------------------------------------------------------
# The module's node: min_age 18, max_age 30 on 2025-06-01, documents and fee required.


@pytest.mark.parametrize(("roll", "fields", "status", "reasons"), [
    ("EL-1", {}, "eligible", []),
    ("EL-2", {"date_of_birth": "2007-06-01"}, "eligible", []),  # 18 on the very day
    ("EL-3", {"date_of_birth": "2007-06-02"}, "ineligible", ["younger than 18 on 2025-06-01"]),
    ("EL-4", {"date_of_birth": "1994-06-02"}, "eligible", []),  # 31 the next day
    ("EL-5", {"date_of_birth": "1994-06-01"}, "ineligible", ["older than 30 on 2025-06-01"]),
    ("EL-6", {"date_of_birth": None}, "ineligible", ["date of birth missing"]),
    ("EL-7", {"fee_paid": False}, "ineligible", ["fee not paid"]),
    ("EL-8", {"documents_verified": False, "fee_paid": False}, "ineligible",
     ["documents not verified", "fee not paid"]),
])
async def test_eligibility_rules_on_save(site: Site, roll: str, fields: dict[str, object],
                                         status: str, reasons: list[str]) -> None:
    c = await create(site.admin, roll, **fields)
    assert (c["eligibility"]["status"], c["eligibility"]["reasons"]) == (status, reasons)
    assert c["eligibility"]["decided_by"] == "rules"


async def test_eligibility_follows_changes_and_overrides(site: Site) -> None:
    c = await create(site.admin, "OV-1", fee_paid=False)
    assert c["eligibility"]["status"] == "ineligible"
    r = await site.admin.patch("/api/candidates/OV-1/", {"fee_paid": True})
    assert r.body["eligibility"]["status"] == "eligible", r

    r = await site.admin.patch("/api/candidates/OV-1/", {"date_of_birth": "2012-01-01"})
    assert r.body["eligibility"] == r.body["eligibility"] | {
        "status": "ineligible", "reasons": ["younger than 18 on 2025-06-01"]}
    note = "Age relaxed by board order 12/2025"
    r = await site.admin.patch("/api/candidates/OV-1/", {"eligibility_override": "eligible",
                                                         "eligibility_note": note})
    assert r.status == 200, r
    assert r.body["eligibility"] == r.body["eligibility"] | {
        "status": "eligible", "reasons": [note], "decided_by": "root"}
    # Other changes keep the decision...
    r = await site.admin.patch("/api/candidates/OV-1/", {"phone": "999"})
    assert r.body["eligibility"]["status"] == "eligible", r
    assert "OV-1" in await _eligible_rolls(site, "OV-")
    # ...until it is cleared: the rules decide again.
    r = await site.admin.patch("/api/candidates/OV-1/", {"eligibility_override": None})
    assert r.body["eligibility"]["status"] == "ineligible", r
    assert "OV-1" not in await _eligible_rolls(site, "OV-")
    r = await site.admin.patch("/api/candidates/OV-1/", {"eligibility_override": "maybe"})
    assert r.status == 400 and "eligibility_override" in r.body, r


async def _eligible_rolls(site: Site, prefix: str) -> list[str]:
    items = await site.admin.all(f"/api/candidates/?search={prefix}&eligibility_status=eligible")
    return [c["roll_no"] for c in items]


async def test_patch_cannot_null_a_required_field(site: Site) -> None:
    """Bug: node/services/candidates/models.py CandidatePatch types every field
    ``X | None = None`` so that it may be left out, which also accepts an explicit null:
    PATCH {"full_name": null} answers 200 and stores a candidate without a name
    (CandidateOut promises a str), {"fee_paid": null} a fee that is neither paid nor
    unpaid; status, gender and accommodations are stored null and only hidden by
    ``records.public``. Fix: refuse null for the fields that CandidateIn does not allow to
    be null (a model_validator, or a sentinel default instead of None); only
    date_of_birth, email and eligibility_override may be cleared.
    """
    await create(site.admin, "NUL-1")
    fields = ("full_name", "fee_paid", "documents_verified", "status", "gender",
              "accommodations", "registered_exams")
    answers = {f: (await site.admin.patch("/api/candidates/NUL-1/", {f: None})).status
               for f in fields}
    stored = site.node.store.get("candidates/NUL-1")
    assert stored is not None
    assert answers == dict.fromkeys(fields, 400), answers
    assert all(stored.data.get(f) is not None for f in fields), stored.data
