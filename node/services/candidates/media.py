"""Photos and documents: validated by their bytes, never by their names.

Photos (JPEG, PNG, WebP) are decoded with Pillow under a pixel limit (a
decompression bomb is refused, not decoded), turned upright, stripped of
EXIF and other metadata by re-encoding, and normalised to a JPEG of at most
600x800 plus a 150x200 thumbnail. Documents (PDF, JPEG, PNG) are sniffed by
their magic bytes; images among them must decode. All are stored as
content-addressed blobs and referenced from the candidate record.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import time
import uuid
import warnings
from enum import StrEnum
from typing import Any

from PIL import Image, ImageOps, UnidentifiedImageError

from node.errors import (
    NotFound,
    PayloadTooLarge,
    Unavailable,
    UnsupportedMediaType,
    ValidationError,
)
from node.services.auth.permissions import Principal
from node.services.candidates.records import CANDIDATES, DOC_PREFIX, Candidates

MAX_PIXELS = 40_000_000
PHOTO_SIZE = (600, 800)
THUMB_SIZE = (150, 200)
SIGNATURES = {
    b"\xff\xd8\xff": "image/jpeg",
    b"\x89PNG\r\n\x1a\n": "image/png",
    b"%PDF-": "application/pdf",
}


class DocumentType(StrEnum):
    ID_PROOF = "id_proof"
    CERTIFICATE = "certificate"
    ADMIT_CARD = "admit_card"
    FEE_RECEIPT = "fee_receipt"
    OTHER = "other"


def sniff(data: bytes) -> str | None:
    """Return the media type the bytes really are (JPEG, PNG, WebP, PDF), or None."""
    for magic, media in SIGNATURES.items():
        if data.startswith(magic):
            return media
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def _decode(data: bytes) -> Image.Image:
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data))
            if img.width * img.height > MAX_PIXELS:
                raise ValidationError(f"Image has too many pixels ({img.width}x{img.height}).")
            img.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise ValidationError("Image is too large to decode safely.") from e
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
            raise ValidationError("File is not a valid image.") from e
    return img


def _jpeg(img: Image.Image, box: tuple[int, int]) -> bytes:
    copy = img.copy()
    copy.thumbnail(box, Image.Resampling.LANCZOS)
    out = io.BytesIO()
    copy.save(out, format="JPEG", quality=85, optimize=True)  # no EXIF is written
    return out.getvalue()


def normalise_photo(data: bytes, max_bytes: int) -> tuple[bytes, bytes, dict[str, Any]]:
    """Validate and normalise a photo; return (photo JPEG, thumbnail JPEG, facts)."""
    if len(data) > max_bytes:
        raise PayloadTooLarge(f"Photo is larger than {max_bytes // 1_000_000} MB.")
    media = sniff(data)
    if media not in ("image/jpeg", "image/png", "image/webp"):
        raise UnsupportedMediaType("A photo must be a JPEG, PNG or WebP image.")
    img = _decode(data)
    img = ImageOps.exif_transpose(img).convert("RGB")
    photo, thumb = _jpeg(img, PHOTO_SIZE), _jpeg(img, THUMB_SIZE)
    with Image.open(io.BytesIO(photo)) as check:
        width, height = check.size
    return photo, thumb, {"width": width, "height": height, "original_type": media}


def check_document(data: bytes, max_bytes: int) -> str:
    """Validate a document by its bytes; return its media type."""
    if len(data) > max_bytes:
        raise PayloadTooLarge(f"Document is larger than {max_bytes // 1_000_000} MB.")
    media = sniff(data)
    if media not in ("application/pdf", "image/jpeg", "image/png"):
        raise UnsupportedMediaType("A document must be a PDF, JPEG or PNG file.")
    if media == "application/pdf":
        if b"%%EOF" not in data[-2048:]:
            raise ValidationError("PDF file is truncated or damaged.")
    else:
        _decode(data)
    return media


class Media:
    """Photo and document operations of one node."""

    def __init__(self, candidates: Candidates) -> None:
        self.candidates = candidates
        self.store = candidates.store
        self.rules = candidates.rules

    async def put_photo(self, actor: Principal, roll_no: str, data: bytes) -> dict[str, Any]:
        """Replace a candidate's photo."""
        self.candidates.in_reach(actor, "candidates.files", roll_no)
        # Decoding a large image takes a second: never on the event loop.
        photo, thumb, facts = await asyncio.to_thread(
            normalise_photo, data, int(self.rules.photo_max_mb * 1_000_000))
        sha = await self.store.put_blob(photo)
        thumb_sha = await self.store.put_blob(thumb)
        meta = {"sha256": sha, "thumb_sha256": thumb_sha, "content_type": "image/jpeg",
                "size": len(photo), **facts, "uploaded_at": time.time(),
                "uploaded_by": actor.username}
        await self.store.put(f"{CANDIDATES}/{roll_no}", {"photo": meta, "updated_at": time.time()},
                             user=actor.username)
        return meta

    def get_photo(self, actor: Principal, roll_no: str, thumb: bool) -> bytes:
        """Return a candidate's photo (or thumbnail) bytes."""
        data = self.candidates.in_reach(actor, "candidates.read", roll_no)
        meta = data.get("photo")
        if not meta:
            raise NotFound("This candidate has no photo.")
        return self._blob(meta["thumb_sha256" if thumb else "sha256"])

    def _blob(self, digest: str) -> bytes:
        blob = self.store.get_blob(digest)
        if blob is None:
            raise Unavailable("The file has not reached this node yet; try again shortly.")
        return blob

    async def add_document(self, actor: Principal, roll_no: str, kind: str, filename: str,
                           data: bytes) -> dict[str, Any]:
        """Attach a typed document to a candidate."""
        self.candidates.in_reach(actor, "candidates.files", roll_no)
        try:
            doc_type = DocumentType(kind)
        except ValueError as e:
            raise ValidationError("Invalid input.", fields={"type": [
                f"Choose from: {', '.join(t.value for t in DocumentType)}."]}) from e
        media = await asyncio.to_thread(check_document, data,
                                        int(self.rules.document_max_mb * 1_000_000))
        sha = await self.store.put_blob(data)
        doc_id = uuid.uuid4().hex[:16]
        safe_name = "".join(c for c in filename if c.isalnum() or c in "._- ")[:100] or doc_id
        meta = {"type": doc_type.value, "sha256": sha, "content_type": media,
                "size": len(data), "filename": safe_name, "uploaded_at": time.time(),
                "uploaded_by": actor.username,
                "digest": hashlib.sha256(data).hexdigest()[:12]}
        await self.store.put(f"{CANDIDATES}/{roll_no}", {f"{DOC_PREFIX}{doc_id}": meta},
                             user=actor.username)
        return {"id": doc_id, **meta}

    def list_documents(self, actor: Principal, roll_no: str) -> list[dict[str, Any]]:
        """Return a candidate's documents."""
        data = self.candidates.in_reach(actor, "candidates.read", roll_no)
        from node.services.candidates.records import public

        docs: list[dict[str, Any]] = public(data)["documents"]
        return docs

    def get_document(self, actor: Principal, roll_no: str,
                     doc_id: str) -> tuple[dict[str, Any], bytes]:
        """Return a document's facts and bytes."""
        data = self.candidates.in_reach(actor, "candidates.read", roll_no)
        meta = data.get(f"{DOC_PREFIX}{doc_id}")
        if not isinstance(meta, dict):
            raise NotFound("Not found.")
        return meta, self._blob(meta["sha256"])

    async def remove_document(self, actor: Principal, roll_no: str, doc_id: str) -> None:
        """Remove a document from a candidate (its blob stays for the audit trail)."""
        data = self.candidates.in_reach(actor, "candidates.files", roll_no)
        key = f"{DOC_PREFIX}{doc_id}"
        if key not in data:
            raise NotFound("Not found.")

        def drop(root: Any) -> None:
            root.pop(key)

        await self.store.change(f"{CANDIDATES}/{roll_no}", drop, user=actor.username,
                                create=False)
