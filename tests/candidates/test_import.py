"""Bulk import through the API: messy workbooks and CSVs, reports, re-imports, dry runs,
the rejected-rows workbook, header mapping and the progress resource."""

from __future__ import annotations

import datetime as dt
import io
import json
import urllib.parse
from typing import Any

import openpyxl
import pytest

from tests.candidates.conftest import Site, create, read_xlsx, xlsx
from tests.replication.conftest import wait_until

pytestmark = pytest.mark.asyncio(loop_scope="module")

HEADERS = ["Roll No", "Candidate Name ", "DOB", "Sex", "Centre Code", "Mobile", "Fee Paid",
           "Docs Verified", "Remarks"]
MESSY: list[list[Any]] = [
    HEADERS,
    ["00123", "  Priya   Sharma ", dt.datetime(2003, 4, 5), "F", "DEMO ", 9876543210, "Yes",
     "yes", "ok"],
    [None] * 9,  # blank rows
    ["   ", None, None, None, None, None, None, None, None],
    ["00124", "अनन्या वर्मा", 37000, "Female", "DEMO", "9876543211", "no", "yes", None],
    [125, "فاطمة الزهراء", "15/08/2001", "f", "DEMO", "98765 43212", "yes", "yes", None],
    ["00126 ", "José  Ñúñez", "2002-03-04", "M", "DEMO", None, "Y", "Y", None],
    ["000127", "Zoë Ångström", dt.date(2004, 12, 31), "o", "DEMO", None, 1, 1, None],
    ["00130", "Dup One", "2001-01-01", "M", "DEMO", None, "yes", "yes", None],
    ["00130", "Dup Two", "2001-01-02", "F", "DEMO", None, "yes", "yes", None],
    ["00131", "Bad Date", "31/02/2001", "F", "DEMO", None, "yes", "yes", None],
]


def messy_xlsx() -> bytes:
    return xlsx(MESSY, text_columns=(0, 5))


def counts(report: dict[str, Any]) -> tuple[int, int, int, int]:
    return (report["created"], report["updated"], report["unchanged"], report["rejected"])


async def test_messy_workbook(site: Site) -> None:
    data = messy_xlsx()
    before = site.log_entries()
    dry = await site.admin.import_file(data, "wait=true&dry_run=true")
    assert dry.status == 200 and dry.body["status"] == "done", dry
    assert counts(dry.body) == (5, 0, 0, 3) and dry.body["dry_run"], dry
    assert site.log_entries() == before
    assert (await site.admin.get("/api/candidates/00123/")).status == 404

    r = await site.admin.import_file(data)
    assert r.status == 200 and r.body["status"] == "done", r
    assert counts(r.body) == (5, 0, 0, 3), r
    assert r.body["total"] == r.body["processed"] == 8, r
    assert r.body["ignored_columns"] == ["Remarks"]
    errors = {e["row"]: e["error"] for e in r.body["errors"]}
    assert set(errors) == {9, 10, 11}, errors
    assert "00130" in errors[9] and "appears 2 times" in errors[10]
    assert "date_of_birth" in errors[11]

    got = {c["roll_no"]: c for c in await site.admin.all("/api/candidates/?search=0012")}
    assert set(got) == {"00123", "00124", "00126", "000127"}
    p = got["00123"]
    assert (p["full_name"], p["date_of_birth"], p["gender"], p["phone"], p["fee_paid"],
            p["documents_verified"], p["center"]) == (
        "Priya Sharma", "2003-04-05", "female", "9876543210", True, True, "DEMO")
    assert p["eligibility"]["status"] == "eligible"
    assert (got["00124"]["full_name"], got["00124"]["date_of_birth"]) == ("अनन्या वर्मा",
                                                                          "2001-04-19")
    assert got["00124"]["eligibility"]["reasons"] == ["fee not paid"]
    assert got["00126"]["full_name"] == "José Ñúñez" and got["00126"]["gender"] == "male"
    assert got["000127"]["date_of_birth"] == "2004-12-31" and got["000127"]["fee_paid"]
    arabic = (await site.admin.get("/api/candidates/125/")).body
    assert (arabic["full_name"], arabic["date_of_birth"], arabic["phone"]) == (
        "فاطمة الزهراء", "2001-08-15", "98765 43212")
    for roll in ("00130", "00131"):
        assert (await site.admin.get(f"/api/candidates/{roll}/")).status == 404

    # The same file again: nothing changes, not one delta is written.
    entries = site.log_entries()
    again = await site.admin.import_file(data)
    assert counts(again.body) == (0, 0, 5, 3), again
    assert site.log_entries() == entries

    # The rejected rows, fixed in the workbook they came back in, import cleanly.
    r = await site.admin.get(f"/api/candidates/import/{again.body['id']}/rejected.xlsx/")
    assert r.status == 200 and r.headers["Content-Type"].startswith(
        "application/vnd.openxmlformats"), r
    wb = openpyxl.load_workbook(io.BytesIO(r.raw))
    ws = wb.worksheets[0]
    rows = [list(row) for row in ws.iter_rows(values_only=True)]
    assert rows[0] == [h.strip() for h in HEADERS] + ["error"]
    assert [row[0] for row in rows[1:]] == ["00130", "00130", "00131"]
    assert all(row[-1] for row in rows[1:])
    ws.cell(row=3, column=1, value="00132")  # the second duplicate gets its own number
    ws.cell(row=4, column=3, value="28/02/2001")
    ws.delete_cols(len(rows[0]))
    out = io.BytesIO()
    wb.save(out)
    fixed = await site.admin.import_file(out.getvalue())
    assert counts(fixed.body) == (3, 0, 0, 0), fixed
    assert (await site.admin.get("/api/candidates/00131/")).body["date_of_birth"] == \
        "2001-02-28"


async def test_csv_with_bom_and_semicolons(site: Site) -> None:
    text = ("Roll No;Candidate Name;DOB;Sex;Centre Code;Mobile;Address\n"
            "S-001;Sharma, Priya;05/04/2003;F;DEMO;+91 98765 43210;\"12, MG Road; Pune\"\n"
            "\n"
            "S-002 ; Müller, Jörg ;2002-01-31;m;DEMO;0123;\n")
    r = await site.admin.import_file(b"\xef\xbb\xbf" + text.encode(), filename="a.csv",
                                     raw=True)
    assert r.status == 200 and counts(r.body) == (2, 0, 0, 0), r
    one = (await site.admin.get("/api/candidates/S-001/")).body
    assert (one["full_name"], one["date_of_birth"], one["phone"], one["address"]) == (
        "Sharma, Priya", "2003-04-05", "+91 98765 43210", "12, MG Road; Pune")
    two = (await site.admin.get("/api/candidates/S-002/")).body
    assert (two["full_name"], two["gender"], two["phone"]) == ("Müller, Jörg", "male", "0123")


async def test_csv_with_tabs(site: Site) -> None:
    text = ("roll_no\tfull_name\tdate_of_birth\tregistered_exams\textra_time_percent\tscribe\n"
            "T-001\tTab Person\t2001-02-03\tMATH-1, PHY-2\t25\tyes\n"
            "T-002\tOther, Person\t\t\t\t\n")
    r = await site.admin.import_file(text.encode(), "wait=true&center=DEMO", filename="t.txt")
    assert r.status == 200 and counts(r.body) == (2, 0, 0, 0), r
    one = (await site.admin.get("/api/candidates/T-001/")).body
    assert one["registered_exams"] == ["MATH-1", "PHY-2"]
    assert one["accommodations"] == {"extra_time_percent": 25, "scribe": True,
                                     "large_print": False, "separate_room": False}
    assert (await site.admin.get("/api/candidates/T-002/")).body["full_name"] == "Other, Person"


async def test_updates_are_counted(site: Site) -> None:
    base = [["roll_no", "full_name", "phone"], ["U-1", "Up One", "111"], ["U-2", "Up Two", "222"]]
    query = "wait=true&center=DEMO"
    assert counts((await site.admin.import_file(xlsx(base), query)).body) == (2, 0, 0, 0)
    base[2][2] = "333"
    base.append(["U-3", "Up Three", ""])
    r = await site.admin.import_file(xlsx(base), query)
    assert counts(r.body) == (1, 1, 1, 0), r
    assert (await site.admin.get("/api/candidates/U-2/")).body["phone"] == "333"


async def test_header_mapping(site: Site) -> None:
    text = "Seat,Cand Name,Born On\nM-1,Mapped Person,2001-02-03\n"
    mapping = {"Cand Name": "full_name", "Seat": "roll_no", "Born On": "date_of_birth"}
    query = "wait=true&center=DEMO&map=" + urllib.parse.quote(json.dumps(mapping))
    r = await site.admin.import_file(text.encode(), query, filename="m.csv")
    assert counts(r.body) == (1, 0, 0, 0), r
    got = (await site.admin.get("/api/candidates/M-1/")).body
    assert (got["full_name"], got["date_of_birth"]) == ("Mapped Person", "2001-02-03")
    for bad in ("{not json", json.dumps(["a"]), json.dumps({"Cand Name": 1})):
        r = await site.admin.import_file(text.encode(), "wait=true&map=" + urllib.parse.quote(
            bad), filename="m.csv")
        assert r.status == 400 and "map" in r.body, (bad, r)
    # A mapping to a column the template does not have fails the import (test_hostile.py
    # pins the HTTP status).
    r = await site.admin.import_file(text.encode(), "wait=true&map=" + urllib.parse.quote(
        json.dumps({"Cand Name": "nickname"})), filename="m.csv")
    assert r.status == 400 and "nickname" in r.body["detail"], r


async def test_progress_resource(site: Site) -> None:
    rows = [["Roll No", "Candidate Name"]] + [[f"P-{i:04d}", f"Person {i}"] for i in range(450)]
    r = await site.admin.import_file(xlsx(rows), query="center=DEMO")
    assert r.status == 202, r
    job = r.body["id"]
    assert r.headers["Location"] == f"/api/candidates/import/{job}/"
    assert r.body["status"] in ("queued", "running")
    seen = []

    async def done() -> bool:
        got = await site.admin.get(f"/api/candidates/import/{job}/")
        assert got.status == 200, got
        seen.append(got.body["processed"])
        return bool(got.body["status"] == "done")

    await wait_until(done, timeout=30, what="the import to finish")
    final = (await site.admin.get(f"/api/candidates/import/{job}/")).body
    assert counts(final) == (450, 0, 0, 0) and final["processed"] == final["total"] == 450
    assert seen == sorted(seen)
    assert final["finished"] >= final["started"]
    assert (await site.admin.get(f"/api/candidates/import/{job}/rejected.xlsx/")).status == 404
    assert (await site.admin.get("/api/candidates/import/nope/")).status == 404


# --- bugs ------------------------------------------------------------------------------------


async def test_rejected_workbook_keeps_cells_that_start_with_plus(site: Site) -> None:
    """The rejected-rows workbook is meant to be fixed and imported again.

    Bug: node/services/candidates/importer.py writes it with tabular.write_xlsx, which
    prefixes every text cell starting with = + - @ with an apostrophe (formula
    neutralisation), and tabular.row_fields never strips it again: a phone '+91 ...'
    comes back as "'+91 ..." and the fixed row is rejected (phone pattern). The same
    happens on export -> import. Fix: strip the neutralising "'" when reading a cell
    (cell_text), or write such cells as explicit text cells instead of prefixing.
    """
    rows = [["Roll No", "Candidate Name", "DOB", "Mobile", "Centre"],
            ["PL-1", "Plus Phone", "not a date", "+91 98765 43210", "DEMO"]]
    r = await site.admin.import_file(xlsx(rows))
    assert counts(r.body) == (0, 0, 0, 1), r
    back = await site.admin.get(f"/api/candidates/import/{r.body['id']}/rejected.xlsx/")
    wb = openpyxl.load_workbook(io.BytesIO(back.raw))
    ws = wb.worksheets[0]
    ws.cell(row=2, column=3, value="2001-02-03")
    ws.delete_cols(6)
    out = io.BytesIO()
    wb.save(out)
    fixed = await site.admin.import_file(out.getvalue())
    assert counts(fixed.body) == (1, 0, 0, 0), fixed
    assert (await site.admin.get("/api/candidates/PL-1/")).body["phone"] == "+91 98765 43210"


async def test_rejected_workbook_puts_the_error_under_its_header(site: Site) -> None:
    """Bug: importer.py ``reject`` appends the error after the row's own cells
    (``[*cells, error]``); a CSV row shorter (or longer) than the header row puts the
    error under another column ('phone' here), which the fixed file then imports as data.
    Fix: pad or cut ``cells`` to ``len(sheet.headers)`` before appending the error.
    """
    text = "roll_no,full_name,date_of_birth,phone\nSH-1,Short Row,not-a-date\n"
    r = await site.admin.import_file(text.encode(), "wait=true&center=DEMO", filename="s.csv")
    assert counts(r.body) == (0, 0, 0, 1), r
    back = await site.admin.get(f"/api/candidates/import/{r.body['id']}/rejected.xlsx/")
    rows = read_xlsx(back.raw)
    assert rows[0] == ["roll_no", "full_name", "date_of_birth", "phone", "error"]
    assert rows[1][3] in (None, ""), rows[1]
    assert "date_of_birth" in str(rows[1][4]), rows[1]


async def test_import_keeps_fields_that_the_file_does_not_have(site: Site) -> None:
    """A centre imports a sheet of new phone numbers (roll, name, mobile).

    Bug: node/services/candidates/records.py ``Candidates.upsert`` stores
    ``stored_fields(body)`` of a full ``CandidateIn``: every column missing from the file
    (or empty) is reset to its default, so fee_paid, documents_verified, category,
    status and accommodations set earlier are wiped and the candidate silently turns
    ineligible. Fix: for an existing record, compare and write only the fields the row
    sets (``model_dump(exclude_unset=True)``).
    """
    await create(site.admin, "KEEP-1", category="OBC", status="active",
                 accommodations={"extra_time_percent": 30, "scribe": True})
    r = await site.admin.import_file(xlsx([["Roll No", "Candidate Name", "Mobile"],
                                           ["KEEP-1", "Candidate KEEP-1", "5550001"]]),
                                     "wait=true&center=DEMO")
    assert counts(r.body) == (0, 1, 0, 0), r
    got = (await site.admin.get("/api/candidates/KEEP-1/")).body
    assert got["phone"] == "5550001"
    assert (got["fee_paid"], got["documents_verified"], got["category"], got["status"],
            got["date_of_birth"], got["accommodations"]["extra_time_percent"]) == (
        True, True, "OBC", "active", "2003-04-05", 30), got
    assert got["eligibility"]["status"] == "eligible", got


async def test_import_of_a_deleted_roll_number(site: Site) -> None:
    """A row whose roll number belongs to a deleted candidate.

    Bug: records.py ``Candidates.upsert`` sees no record (``raw`` skips tombstones) and
    counts the row 'created', but ``store.put`` only sets fields on the tombstoned record,
    which stays deleted: the report says created, the candidate is nowhere. (The API's
    ``create`` answers 409 for the same roll number.) Fix: reject the row like ``create``
    does (look the key up with include_deleted=True), or undelete it explicitly.
    """
    await create(site.admin, "GONE-1")
    assert (await site.admin.delete("/api/candidates/GONE-1/")).status == 204
    r = await site.admin.import_file(xlsx([["Roll No", "Candidate Name"],
                                           ["GONE-1", "Back Again"]]), "wait=true&center=DEMO")
    created = (await site.admin.get("/api/candidates/GONE-1/")).status == 200
    assert created == (r.body["created"] == 1), (r, created)


async def test_a_file_without_a_name_column_says_so(site: Site) -> None:
    """Bug: importer.py ``_error_text`` returns only the field errors of an ExamnodeError
    when it has any, dropping its detail: the job says 'file: Columns found: ...' but not
    what is wrong ('The file needs a roll number and a name column.')."""
    r = await site.admin.import_file(b"Roll No,Remarks\nN-1,hello\n", filename="n.csv")
    assert r.status == 400, r
    assert "name column" in r.body["detail"], r
