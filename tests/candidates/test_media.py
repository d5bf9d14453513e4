"""Photos and documents: accepted by what the bytes are, normalised, and refused cleanly
(nothing stored) when they are not what they claim, too big, or hostile."""

from __future__ import annotations

import io
import os

import pytest
from PIL import Image

from tests.candidates.conftest import (
    Site,
    create,
    image_bytes,
    jpeg_with_exif,
    minimal_pdf,
    png_bomb,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")
SITE_CONFIG = {"candidates": {"photo_max_mb": 0.5, "document_max_mb": 0.5}}


def opened(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


async def test_photo_is_upright_small_and_without_exif(site: Site) -> None:
    await create(site.admin, "PH-1")
    original = jpeg_with_exif((1200, 900))
    assert b"SpyCam" in original and opened(original).getexif()
    r = await site.admin.raw("/api/candidates/PH-1/photo/", original, method="PUT",
                             content_type="image/jpeg")
    assert r.status == 200, r
    meta = r.body
    assert meta["content_type"] == "image/jpeg" and meta["original_type"] == "image/jpeg"

    r = await site.admin.get("/api/candidates/PH-1/photo/")
    assert r.status == 200 and r.headers["Content-Type"] == "image/jpeg", r
    photo = opened(r.raw)
    assert photo.format == "JPEG"
    assert not photo.getexif() and "exif" not in photo.info
    assert b"SpyCam" not in r.raw and b"Exif" not in r.raw
    # Turned upright (orientation 6: the 1200x900 picture is a portrait) and shrunk.
    assert photo.size == (600, 800) == (meta["width"], meta["height"])
    top, bottom = photo.getpixel((300, 100)), photo.getpixel((300, 700))
    assert top[0] > 150 > top[1] and bottom[1] > 200, (top, bottom)  # the red half on top
    thumb = await site.admin.get("/api/candidates/PH-1/photo/?size=thumb")
    assert thumb.status == 200 and thumb.headers["Content-Type"] == "image/jpeg", thumb
    small = opened(thumb.raw)
    assert small.format == "JPEG" and small.width <= 150 and small.height <= 200
    assert not small.getexif()
    got = (await site.admin.get("/api/candidates/PH-1/")).body["photo"]
    assert got["sha256"] == meta["sha256"] and got["thumb_sha256"] == meta["thumb_sha256"]


@pytest.mark.parametrize(("fmt", "media"), [("PNG", "image/png"), ("WEBP", "image/webp"),
                                            ("JPEG", "image/jpeg")])
async def test_photo_formats_by_multipart(site: Site, fmt: str, media: str) -> None:
    roll = f"PH-{fmt}"
    await create(site.admin, roll)
    r = await site.admin.upload(f"/api/candidates/{roll}/photo/", image_bytes(fmt, (300, 400)),
                                filename=f"me.{fmt.lower()}", content_type=media, method="PUT")
    assert r.status == 200 and r.body["original_type"] == media, r
    r = await site.admin.get(f"/api/candidates/{roll}/photo/")
    img = opened(r.raw)
    assert (img.format, img.size) == ("JPEG", (300, 400))


def truncated_jpeg() -> bytes:
    data = image_bytes("JPEG", (400, 400), quality=95)
    return data[: len(data) // 2]


def too_big_jpeg() -> bytes:
    noise = Image.frombytes("RGB", (700, 700), os.urandom(700 * 700 * 3))
    out = io.BytesIO()
    noise.save(out, format="JPEG", quality=98)
    assert out.tell() > 500_000
    return out.getvalue()


REFUSED_PHOTOS = {
    "text-named-jpg": (b"this is not a photo at all\n" * 20, "photo.jpg", 415),
    "gif": (image_bytes("GIF"), "photo.gif", 415),
    "pdf": (minimal_pdf(), "photo.jpg", 415),
    "truncated-jpeg": (truncated_jpeg(), "photo.jpg", 400),
    "png-bomb": (png_bomb(), "photo.png", 400),
    "too-big": (too_big_jpeg(), "photo.jpg", 413),
}


@pytest.mark.parametrize("how", ["raw", "multipart"])
@pytest.mark.parametrize("case", list(REFUSED_PHOTOS))
async def test_refused_photo_leaves_the_photo_unchanged(site: Site, case: str,
                                                        how: str) -> None:
    content, filename, status = REFUSED_PHOTOS[case]
    roll = "PH-KEEP"
    if (await site.admin.get(f"/api/candidates/{roll}/")).status == 404:
        await create(site.admin, roll)
        r = await site.admin.raw(f"/api/candidates/{roll}/photo/", image_bytes("PNG"),
                                 method="PUT")
        assert r.status == 200, r
    before = (await site.admin.get(f"/api/candidates/{roll}/")).body
    entries, blobs = site.log_entries(), site.blob_entries()
    path = f"/api/candidates/{roll}/photo/"
    if how == "raw":
        r = await site.admin.raw(path, content, method="PUT", content_type="image/jpeg")
    else:
        r = await site.admin.upload(path, content, filename=filename,
                                    content_type="image/jpeg", method="PUT")
    assert r.status == status, r
    assert r.body["code"] and r.body["detail"], r
    assert (await site.admin.get(f"/api/candidates/{roll}/")).body == before
    assert (site.log_entries(), site.blob_entries()) == (entries, blobs)


async def test_photo_of_nobody(site: Site) -> None:
    await create(site.admin, "PH-NONE")
    assert (await site.admin.get("/api/candidates/PH-NONE/photo/")).status == 404
    r = await site.admin.raw("/api/candidates/NOBODY/photo/", image_bytes("PNG"), method="PUT")
    assert r.status == 404, r
    r = await site.admin.raw("/api/candidates/PH-NONE/photo/", b"", method="PUT")
    assert r.status == 400, r


# --- documents -------------------------------------------------------------------------------


async def test_documents_add_list_download_remove(site: Site) -> None:
    await create(site.admin, "DOC-1")
    files = {"id_proof": (minimal_pdf(), "aadhaar card.pdf", "application/pdf"),
             "certificate": (image_bytes("PNG", (200, 100)), "marks.png", "image/png"),
             "fee_receipt": (image_bytes("JPEG", (200, 100)), "receipt.jpg", "image/jpeg")}
    ids = {}
    for kind, (content, name, media) in files.items():
        r = await site.admin.upload("/api/candidates/DOC-1/documents/", content, name,
                                    content_type="application/octet-stream",
                                    fields={"type": kind})
        assert r.status == 201, r
        assert (r.body["type"], r.body["content_type"], r.body["size"]) == (
            kind, media, len(content))
        ids[kind] = r.body["id"]
    listed = (await site.admin.get("/api/candidates/DOC-1/documents/")).body
    assert [d["type"] for d in listed] == list(files)
    assert [d["id"] for d in (await site.admin.get("/api/candidates/DOC-1/")).body[
        "documents"]] == list(ids.values())
    for kind, (content, _, media) in files.items():
        r = await site.admin.get(f"/api/candidates/DOC-1/documents/{ids[kind]}/")
        assert r.status == 200 and r.raw == content, r
        assert r.headers["Content-Type"] == media
        assert "attachment" in r.headers["Content-Disposition"]

    # Replacing the profile keeps the documents.
    r = await site.admin.put("/api/candidates/DOC-1/", {
        "roll_no": "DOC-1", "full_name": "New Name", "center": "DEMO"})
    assert r.status == 200 and len(r.body["documents"]) == 3, r

    doc = ids["certificate"]
    assert (await site.admin.delete(f"/api/candidates/DOC-1/documents/{doc}/")).status == 204
    assert (await site.admin.get(f"/api/candidates/DOC-1/documents/{doc}/")).status == 404
    assert (await site.admin.delete(f"/api/candidates/DOC-1/documents/{doc}/")).status == 404
    listed = (await site.admin.get("/api/candidates/DOC-1/documents/")).body
    assert [d["type"] for d in listed] == ["id_proof", "fee_receipt"]


async def test_document_filename_is_made_safe(site: Site) -> None:
    await create(site.admin, "DOC-2")
    r = await site.admin.upload("/api/candidates/DOC-2/documents/", minimal_pdf(),
                                '../../etc/pass"wd;.pdf', fields={"type": "other"})
    assert r.status == 201, r
    assert "/" not in r.body["filename"] and '"' not in r.body["filename"]
    r = await site.admin.get(f"/api/candidates/DOC-2/documents/{r.body['id']}/")
    assert r.status == 200 and r.headers["Content-Disposition"].count('"') == 2, r


def exe() -> bytes:
    return b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff" + b"\x00" * 200 + b"%%EOF"


def zip_archive() -> bytes:
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr("payload.exe", exe())
    return out.getvalue()


@pytest.mark.parametrize(("content", "fields", "status"), [
    (exe(), {"type": "id_proof"}, 415),
    (zip_archive(), {"type": "id_proof"}, 415),
    (b"%%EOF just text\n", {"type": "id_proof"}, 415),
    (image_bytes("GIF"), {"type": "id_proof"}, 415),
    (minimal_pdf()[:-40], {"type": "id_proof"}, 400),  # truncated: no %%EOF
    (truncated_jpeg(), {"type": "certificate"}, 400),
    (minimal_pdf(), {"type": "passport_photo"}, 400),
    (minimal_pdf(), {}, 400),
    (minimal_pdf() + b"%" * 600_000, {"type": "other"}, 413),
], ids=["exe", "zip", "text", "gif", "truncated-pdf", "truncated-jpeg", "bad-type", "no-type",
        "too-big"])
async def test_refused_document_stores_nothing(site: Site, content: bytes,
                                               fields: dict[str, str], status: int) -> None:
    roll = "DOC-KEEP"
    if (await site.admin.get(f"/api/candidates/{roll}/")).status == 404:
        await create(site.admin, roll)
    entries, blobs = site.log_entries(), site.blob_entries()
    r = await site.admin.upload(f"/api/candidates/{roll}/documents/", content, "file.pdf",
                                content_type="application/pdf", fields=fields)
    assert r.status == status, r
    if status == 400 and "type" in r.body:
        assert r.body["type"], r
    assert (await site.admin.get(f"/api/candidates/{roll}/documents/")).body == []
    assert (site.log_entries(), site.blob_entries()) == (entries, blobs)


async def test_document_by_raw_body(site: Site) -> None:
    await create(site.admin, "DOC-3")
    r = await site.admin.raw("/api/candidates/DOC-3/documents/?type=admit_card&filename=a.pdf",
                             minimal_pdf())
    assert r.status == 201 and r.body["type"] == "admit_card", r


async def test_deleted_candidate_has_no_files(site: Site) -> None:
    await create(site.admin, "DOC-4")
    r = await site.admin.raw("/api/candidates/DOC-4/photo/", image_bytes("PNG"), method="PUT")
    assert r.status == 200, r
    assert (await site.admin.delete("/api/candidates/DOC-4/")).status == 204
    assert (await site.admin.get("/api/candidates/DOC-4/photo/")).status == 404
    assert (await site.admin.get("/api/candidates/DOC-4/documents/")).status == 404
    r = await site.admin.upload("/api/candidates/DOC-4/documents/", minimal_pdf(), "a.pdf",
                                fields={"type": "other"})
    assert r.status == 404, r


async def test_photo_processing_does_not_block_the_event_loop(site: Site) -> None:
    """A 120 KB PNG of 6000x6000 pixels (under every limit) takes Pillow about a second
    to decode, turn and shrink.

    Bug: node/services/candidates/media.py ``Media.put_photo`` calls ``normalise_photo``
    (and ``add_document`` calls ``check_document``, which decodes images) on the event
    loop: every other request of the node, kiosks included, waits meanwhile
    (CONVENTIONS.md, anti-pattern 1). Fix: ``await asyncio.to_thread(normalise_photo, ...)``
    and the same for ``check_document``.
    """
    import asyncio

    await create(site.admin, "PH-LOOP")
    big = image_bytes("PNG", (6000, 6000))
    assert len(big) < 500_000
    loop = asyncio.get_running_loop()
    lag = 0.0

    async def monitor() -> None:
        nonlocal lag
        while True:
            start = loop.time()
            await asyncio.sleep(0.01)
            lag = max(lag, loop.time() - start - 0.01)

    task = asyncio.create_task(monitor(), name="loop-lag-monitor")
    try:
        r = await site.admin.raw("/api/candidates/PH-LOOP/photo/", big, method="PUT")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert r.status == 200, r
    assert lag < 0.25, f"the event loop stalled for {lag:.2f} s"
