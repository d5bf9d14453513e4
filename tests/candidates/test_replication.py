"""Two nodes of one centre: candidates, photos, documents and imports made on one node
reach the other; files travel as blobs fetched on demand (byte for byte)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import pytest_asyncio

from tests.candidates.conftest import (
    Client,
    Reply,
    Site,
    create,
    image_bytes,
    jpeg_with_exif,
    minimal_pdf,
    node_config,
    start_site,
    xlsx,
)
from tests.replication.conftest import Cluster, Node, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="module")


@dataclass
class Pair:
    a: Site
    b: Node
    admin_b: Client


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def pair(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Pair]:
    cluster = Cluster(tmp_path_factory.mktemp("pair"))
    try:
        a = await start_site(cluster, "hall-a", config={"candidates": {"document_max_mb": 25}})
        b = await cluster.join(a.node, "hall-b", config=node_config())
        await b.start()
        await wait_until(lambda: a.node.node_id in b.peers(), what="b connected to a")
        anon_b = Client(cluster.http, b.api)

        async def can_sign_in() -> bool:
            return (await anon_b.post("/api/auth/login/", {
                "username": "root", "password": "Sturdy-Lantern-42"})).status == 200

        await wait_until(can_sign_in, what="the admin reached b")
        yield Pair(a, b, await anon_b.login("root"))
    finally:
        await cluster.close()


async def arrived(client: Client, path: str, timeout: float = 15) -> Reply:
    """Poll ``path`` until it answers 200 (503 while a blob is on its way); return it."""
    replies: list[Reply] = []

    async def ok() -> bool:
        replies.append(await client.get(path))
        assert replies[-1].status in (200, 404, 503), replies[-1]
        return replies[-1].status == 200

    await wait_until(ok, timeout, what=f"{path} on {client.base}")
    return replies[-1]


async def test_photo_made_on_a_downloads_on_b(pair: Pair) -> None:
    a = pair.a.admin
    await create(a, "R-1", full_name="Replicated Person")
    r = await a.raw("/api/candidates/R-1/photo/", jpeg_with_exif((800, 600)), method="PUT")
    assert r.status == 200, r
    photo_a = (await a.get("/api/candidates/R-1/photo/")).raw
    thumb_a = (await a.get("/api/candidates/R-1/photo/?size=thumb")).raw

    got = await arrived(pair.admin_b, "/api/candidates/R-1/")
    assert got.body["full_name"] == "Replicated Person"
    photo_b = await arrived(pair.admin_b, "/api/candidates/R-1/photo/")
    assert photo_b.raw == photo_a and photo_b.headers["Content-Type"] == "image/jpeg"
    assert (await arrived(pair.admin_b, "/api/candidates/R-1/photo/?size=thumb")).raw == thumb_a

    # And back: a new photo taken on b replaces the one on a.
    r = await pair.admin_b.raw("/api/candidates/R-1/photo/", image_bytes("PNG", (90, 120)),
                               method="PUT")
    assert r.status == 200, r
    photo_b2 = (await pair.admin_b.get("/api/candidates/R-1/photo/")).raw

    async def replaced() -> bool:
        return (await a.get("/api/candidates/R-1/photo/")).raw == photo_b2

    await wait_until(replaced, what="b's photo on a")


async def test_document_made_on_a_downloads_on_b(pair: Pair) -> None:
    a = pair.a.admin
    await create(a, "R-2")
    pdf = minimal_pdf("replicated")
    r = await a.upload("/api/candidates/R-2/documents/", pdf, "id.pdf",
                       fields={"type": "id_proof"})
    assert r.status == 201, r
    doc = r.body["id"]
    got = await arrived(pair.admin_b, f"/api/candidates/R-2/documents/{doc}/")
    assert got.raw == pdf and got.headers["Content-Type"] == "application/pdf"

    assert (await a.delete(f"/api/candidates/R-2/documents/{doc}/")).status == 204

    async def gone() -> bool:
        return (await pair.admin_b.get(f"/api/candidates/R-2/documents/{doc}/")).status == 404

    await wait_until(gone, what="the removal on b")


async def test_import_on_a_is_visible_on_b(pair: Pair) -> None:
    rows = [["Roll No", "Candidate Name", "Centre"]] + [
        [f"IMP-{i:03d}", f"Imported {i}", "DEMO"] for i in range(60)]
    r = await pair.a.admin.import_file(xlsx(rows))
    assert r.body["status"] == "done" and r.body["created"] == 60, r

    async def all_there() -> bool:
        r = await pair.admin_b.get("/api/candidates/?search=IMP-&page_size=1")
        return bool(r.status == 200 and r.body["count"] == 60)

    await wait_until(all_there, what="60 imported candidates on b")
    items = await pair.admin_b.all("/api/candidates/?search=IMP-")
    assert [c["full_name"] for c in items[:2]] == ["Imported 0", "Imported 1"]


async def test_a_large_document_reaches_b(pair: Pair) -> None:
    """The largest document allowed (``document_max_mb`` is at most 25, below the 32 MiB
    peer message a blob travels in) reaches the other node whole."""
    from pydantic import ValidationError

    from node.config import CandidatesSection

    with pytest.raises(ValidationError):
        CandidatesSection(document_max_mb=40)
    a = pair.a.admin
    await create(a, "R-BIG")
    pdf = minimal_pdf()
    big = pdf[:-6] + b"%" * (24_000_000 - len(pdf)) + pdf[-6:]
    r = await a.upload("/api/candidates/R-BIG/documents/", big, "scan.pdf",
                       fields={"type": "certificate"})
    assert r.status == 201, r
    got = await arrived(pair.admin_b, f"/api/candidates/R-BIG/documents/{r.body['id']}/",
                        timeout=30)
    assert got.raw == big
