"""Isolation between centres on an HQ: a centre's staff see and change only their centre's
candidates; another centre's candidate is a 404, never a 403 that confirms it exists."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from tests.candidates.conftest import (
    Site,
    candidate,
    create,
    image_bytes,
    minimal_pdf,
    read_xlsx,
    start_site,
    xlsx,
)
from tests.replication.conftest import Cluster

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def hq(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Site]:
    """An HQ with centres A and B, their candidates, and staff of both."""
    cluster = Cluster(tmp_path_factory.mktemp("hq"))
    try:
        site = await start_site(cluster, "hq", hq=True)
        for code in ("A", "B"):
            await cluster.provision(site.node, code)
            r = await site.admin.post("/api/auth/centers/", {"code": code,
                                                             "name": f"Centre {code}"})
            assert r.status == 201, r
        await site.add_user("ca_a", "center_admin", "A")
        await site.add_user("ca_b", "center_admin", "B")
        await site.add_user("inv_a", "invigilator", "A")
        await site.add_user("ev_a", "evaluator", "A")
        await create(site.admin, "ISO-A1", center="A", full_name="Alpha One")
        await create(site.admin, "ISO-A2", center="A", full_name="Alpha Two")
        await create(site.admin, "ISO-B1", center="B", full_name="Bravo One")
        yield site
    finally:
        await cluster.close()


async def test_centre_admin_does_not_see_the_other_centre(hq: Site) -> None:
    ca = hq.users["ca_a"]
    for method, path, body in (
            ("GET", "/api/candidates/ISO-B1/", None),
            ("PATCH", "/api/candidates/ISO-B1/", {"phone": "1"}),
            ("PUT", "/api/candidates/ISO-B1/", candidate("ISO-B1", center="B")),
            ("DELETE", "/api/candidates/ISO-B1/", None),
            ("GET", "/api/candidates/ISO-B1/photo/", None),
            ("GET", "/api/candidates/ISO-B1/documents/", None)):
        r = await ca.request(method, path, json_body=body)
        assert r.status == 404, (method, path, r)
    r = await ca.raw("/api/candidates/ISO-B1/photo/", image_bytes("PNG"), method="PUT")
    assert r.status == 404, r
    r = await ca.upload("/api/candidates/ISO-B1/documents/", minimal_pdf(), "id.pdf",
                        fields={"type": "id_proof"})
    assert r.status == 404, r

    assert [c["roll_no"] for c in await ca.all("/api/candidates/?search=ISO-")] == [
        "ISO-A1", "ISO-A2"]
    assert await ca.all("/api/candidates/?center=B") == []
    r = await ca.get("/api/candidates/export/?format=csv")
    assert r.status == 200, r
    assert "ISO-B1" not in r.raw.decode("utf-8-sig") and "ISO-A1" in r.raw.decode("utf-8-sig")
    r = await ca.get("/api/candidates/export/?format=xlsx&center=B")
    assert r.status == 200 and len(read_xlsx(r.raw)) == 1, r  # the header only
    # B's admin sees B's candidate (and B's only); the admin sees everyone.
    cb = hq.users["ca_b"]
    assert [c["roll_no"] for c in await cb.all("/api/candidates/?search=ISO-")] == ["ISO-B1"]
    assert len(await hq.admin.all("/api/candidates/?search=ISO-")) == 3
    assert (await hq.admin.get("/api/candidates/ISO-B1/")).body["full_name"] == "Bravo One"


async def test_centre_admin_creates_only_in_their_centre(hq: Site) -> None:
    ca = hq.users["ca_a"]
    before = hq.log_entries()
    r = await ca.post("/api/candidates/", candidate("ISO-X1", center="B"))
    assert r.status == 403 and r.body["code"] == "permission_denied", r
    assert hq.log_entries() == before
    assert (await hq.admin.get("/api/candidates/ISO-X1/")).status == 404
    r = await ca.post("/api/candidates/", candidate("ISO-A3", center="A"))
    assert r.status == 201, r


async def test_centre_admin_imports_only_into_their_centre(hq: Site) -> None:
    ca = hq.users["ca_a"]
    data = xlsx([["Roll No", "Candidate Name", "Centre Code"],
                 ["ISO-A10", "Own Centre", "A"],
                 ["ISO-A11", "No Centre Given", None],
                 ["ISO-B10", "Other Centre", "B"]])
    # ?center=B is an admin's choice; a centre admin's rows default to their own centre.
    r = await ca.import_file(data, "wait=true&center=B")
    assert r.status == 200 and r.body["status"] == "done", r
    assert (r.body["created"], r.body["rejected"]) == (2, 1), r
    assert r.body["errors"][0]["row"] == 4 and "not your centre" in r.body["errors"][0]["error"]
    assert (await hq.admin.get("/api/candidates/ISO-A11/")).body["center"] == "A"
    assert (await hq.admin.get("/api/candidates/ISO-B10/")).status == 404
    # The job is its owner's: B's admin cannot read it.
    job = r.body["id"]
    assert (await ca.get(f"/api/candidates/import/{job}/")).status == 200
    assert (await hq.users["ca_b"].get(f"/api/candidates/import/{job}/")).status == 404
    assert (await hq.users["ca_b"].get(f"/api/candidates/import/{job}/rejected.xlsx/")
            ).status == 404


async def test_dry_run_counts_what_the_real_import_would_do(hq: Site) -> None:
    """A centre admin's row that names a roll number of another centre is rejected by the
    import; the dry run must say so too.

    Bug: node/services/candidates/importer.py ``Importer._one`` (dry run) compares the
    fields with the stored record but skips the check of ``Candidates.upsert`` that the
    record belongs to the row's centre: it counts the row as 'updated' (and tells centre
    A's admin that a roll number of centre B exists).
    """
    ca = hq.users["ca_a"]
    data = xlsx([["Roll No", "Candidate Name"], ["ISO-B1", "Taken Over"]])
    dry = await ca.import_file(data, "wait=true&dry_run=true")
    real = await ca.import_file(data, "wait=true")
    assert real.body["rejected"] == 1, real
    assert (await hq.admin.get("/api/candidates/ISO-B1/")).body["full_name"] == "Bravo One"
    counts = ("created", "updated", "unchanged", "rejected")
    assert [dry.body[k] for k in counts] == [real.body[k] for k in counts], (dry, real)


async def test_invigilator_reads_and_evaluator_is_refused(hq: Site) -> None:
    inv, ev = hq.users["inv_a"], hq.users["ev_a"]
    assert (await inv.get("/api/candidates/ISO-A1/")).status == 200
    assert (await inv.get("/api/candidates/ISO-B1/")).status == 404
    assert {c["center"] for c in await inv.all("/api/candidates/")} == {"A"}
    before = hq.log_entries()
    for r in (await inv.post("/api/candidates/", candidate("ISO-A20", center="A")),
              await inv.patch("/api/candidates/ISO-A1/", {"phone": "1"}),
              await inv.delete("/api/candidates/ISO-A1/"),
              await inv.raw("/api/candidates/ISO-A1/photo/", image_bytes("PNG"), method="PUT"),
              await inv.import_file(xlsx([["Roll", "Name"], ["ISO-A21", "X"]])),
              await inv.get("/api/candidates/export/")):
        assert r.status == 403, r
    for r in (await ev.get("/api/candidates/"), await ev.get("/api/candidates/ISO-A1/"),
              await ev.get("/api/candidates/ISO-A1/photo/"),
              await ev.post("/api/candidates/", candidate("ISO-A22", center="A")),
              await ev.get("/api/candidates/export/?format=csv")):
        assert r.status == 403, r
    assert hq.log_entries() == before
    assert (await hq.anon().get("/api/candidates/")).status == 401
