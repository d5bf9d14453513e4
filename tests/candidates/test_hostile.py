"""Hostile or broken import files fail cleanly: a reason, nothing written, no hang."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from tests.candidates.conftest import Site, image_bytes, xlsx, zip_of

pytestmark = pytest.mark.asyncio(loop_scope="module")
SITE_CONFIG = {"candidates": {"import_max_mb": 3}}

WORKBOOK = b'<?xml version="1.0"?><workbook xmlns="http://schemas.openxmlformats.org/' \
           b'spreadsheetml/2006/main"/>'
MB = 1 << 20


def zip_bomb() -> bytes:
    """A 'workbook' whose sheet unpacks to 600 MB of zeros (a few hundred KB packed)."""
    return zip_of({"xl/workbook.xml": WORKBOOK, "xl/worksheets/sheet1.xml": 600 * MB})


def wide_bomb() -> bytes:
    """45 members of 12 MB each: none is a bomb by itself, together 540 MB."""
    members: dict[str, bytes | int] = {"xl/workbook.xml": WORKBOOK}
    members |= {f"xl/media/image{i}.bin": 12 * MB for i in range(45)}
    return zip_of(members)


def long_line_csv() -> bytes:
    return b"roll_no,full_name\nX-1," + b"A" * MB + b"\n"


FILES: dict[str, tuple[Callable[[], bytes], str, str]] = {
    # name: (file, its name, a word of the reason)
    "zip-bomb": (zip_bomb, "candidates.xlsx", "bomb"),
    "wide-zip-bomb": (wide_bomb, "candidates.xlsx", "512 MB"),
    "zip-not-workbook": (lambda: zip_of({"word/document.xml": b"<w/>"}), "c.xlsx", "not an Excel"),
    "damaged-zip": (lambda: b"PK\x03\x04" + b"\x00garbage" * 100, "c.xlsx", "damaged"),
    "one-1mb-line": (long_line_csv, "c.csv", "longer than"),
    "png-as-csv": (lambda: image_bytes("PNG"), "candidates.csv", "neither"),
    "old-xls": (lambda: b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 1024, "c.xlsx", ".xls"),
    "empty": (lambda: b"", "c.csv", "empty"),
    "whitespace": (lambda: b"  \r\n\r\n ", "c.csv", "empty"),
    "latin-1": (lambda: "roll_no,full_name\nL-1,José Müller\n".encode("latin-1"), "c.csv",
                "UTF-8"),
    "nul-bytes": (lambda: b"roll_no,full_name\nN-1,A\x00B\n", "c.csv", "neither"),
    "no-columns": (lambda: b"foo,bar\n1,2\n", "c.csv", "Columns found"),
}


@pytest.mark.parametrize("case", list(FILES))
async def test_hostile_file_fails_cleanly(site: Site, case: str) -> None:
    make, filename, reason = FILES[case]
    before = site.log_entries()
    started = time.monotonic()
    r = await site.admin.import_file(make(), "wait=true&center=DEMO", filename=filename)
    assert time.monotonic() - started < 10
    assert r.body is not None, r
    if "status" in r.body:  # the job ran and failed
        assert r.body["status"] == "failed", r
        assert reason in r.body["detail"], r
        assert (r.body["created"], r.body["updated"]) == (0, 0), r
    else:  # refused before a job started
        assert 400 <= r.status < 500 and reason in str(r.body), r
    assert site.log_entries() == before
    assert await site.admin.all("/api/candidates/") == []


async def test_a_refused_file_answers_with_its_http_status(site: Site) -> None:
    """?wait=true answers once the import has finished; a file the import refuses must
    answer 4xx with the refusal's code, as the route documents (413, 415).

    Bug: node/api/candidates.py ``import_candidates`` returns ``job.report()`` with 200
    whatever the outcome: a zip bomb, a PNG, an .xls or an unknown mapped column all answer
    '200 {"status": "failed"}'; the 400/415 of the refusal (tabular.read_sheet,
    map_headers) is lost in ``Importer.run``. Fix: keep the ExamnodeError on the job and,
    with wait=true, raise it (or answer its status and code); better, read and check the
    sheet (read_sheet, map_headers) before starting the job, so both modes refuse at once.
    """
    import json
    import urllib.parse

    cases = {"zip-bomb": (zip_bomb(), "", 400), "png-as-csv": (image_bytes("PNG"), "", 415),
             "old-xls": (FILES["old-xls"][0](), "", 415),
             "latin-1": (FILES["latin-1"][0](), "", 400),
             "unknown-mapped-column": (b"a,b\n1,2\n", "&map=" + urllib.parse.quote(
                 json.dumps({"a": "nickname"})), 400)}
    got, want = {}, {}
    for name, (content, query, status) in cases.items():
        r = await site.admin.import_file(content, f"wait=true&center=DEMO{query}",
                                         filename="c.xlsx")
        got[name], want[name] = (r.status, r.body.get("code")), (status, {
            400: "invalid", 415: "unsupported_media_type"}[status])
    assert got == want


async def test_empty_raw_body_and_oversized_file(site: Site) -> None:
    r = await site.admin.import_file(b"", raw=True)
    assert r.status == 400 and r.body["code"] == "invalid", r
    big = b"roll_no,full_name\n" + b"B-1,Big Person\n" * (4 * MB // 15)
    for raw in (True, False):
        r = await site.admin.import_file(big, raw=raw, filename="big.csv")
        assert r.status == 413 and r.body["code"] == "too_large", r
    assert await site.admin.all("/api/candidates/") == []


async def test_header_only_file_writes_nothing(site: Site) -> None:
    for content, name in ((b"\xef\xbb\xbfRoll No,Candidate Name\r\n", "h.csv"),
                          (xlsx([["Roll No", "Candidate Name"], [None, None]]), "h.xlsx")):
        r = await site.admin.import_file(content, "wait=true&center=DEMO", filename=name)
        assert r.status == 200 and r.body["total"] == 0, r
        assert (r.body["created"], r.body["rejected"]) == (0, 0), r
    assert await site.admin.all("/api/candidates/") == []


def far_cell_xlsx(rows: int) -> bytes:
    """A 5 KB workbook with two candidates and one cell at column XFD, row ``rows``."""
    import io

    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["roll_no", "full_name", "center"])
    ws.append(["FAR-1", "Far Away", "DEMO"])
    ws.cell(row=rows, column=16384, value="x")
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


async def test_a_far_away_cell_does_not_pin_a_cpu(site: Site) -> None:
    """A tiny workbook whose sheet claims (or has a cell at) column XFD of row 4000.

    Bug: node/services/candidates/tabular.py ``_read_xlsx`` iterates
    ``ws.iter_rows(values_only=True)`` of a read-only sheet: openpyxl pads every row to
    the sheet's dimension (16384 columns) and yields the missing rows in between; blank
    rows are skipped before the ``max_rows`` check, so nothing bounds the work.
    4000 rows take seconds; a cell at XFD1048576 (still ~5 KB) keeps the import thread
    busy for about a quarter of an hour, holding the GIL against the event loop. Fix:
    ``ws.reset_dimensions()`` before iterating (rows come back unpadded, gaps as empty
    tuples), cut each row to the header width, and count blank rows against a bound.
    """
    data = far_cell_xlsx(4000)
    assert len(data) < 10_000
    started = time.monotonic()
    r = await site.admin.import_file(data, "wait=true", filename="far.xlsx")
    elapsed = time.monotonic() - started
    assert r.status == 200, r
    assert elapsed < 0.75, f"the import of a {len(data)} byte file took {elapsed:.1f} s"
    await site.admin.delete("/api/candidates/FAR-1/")
