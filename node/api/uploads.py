"""Reading uploaded files: multipart/form-data or a raw body, with a size limit."""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import BodyPartReader, StreamReader, web

from node.errors import PayloadTooLarge, ValidationError


@dataclass
class Upload:
    data: bytes
    filename: str
    fields: dict[str, str] = field(default_factory=dict)


async def _read_limited(stream: StreamReader, max_bytes: int) -> bytes:
    chunks, size = [], 0
    async for chunk in stream.iter_chunked(1 << 16):
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLarge(f"File is larger than {max_bytes // 1_000_000} MB.")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_upload(request: web.Request, max_bytes: int) -> Upload:
    """Return the uploaded file (the first file part, or the whole raw body)."""
    if (request.content_length or 0) > max_bytes + 64 * 1024:
        raise PayloadTooLarge(f"File is larger than {max_bytes // 1_000_000} MB.")
    if request.content_type.startswith("multipart/"):
        reader = await request.multipart()
        upload: Upload | None = None
        fields: dict[str, str] = {}
        async for part in reader:
            if not isinstance(part, BodyPartReader):
                continue
            if part.filename is not None and upload is None:
                buf = bytearray()
                while chunk := bytes(await part.read_chunk(1 << 16)):
                    buf.extend(chunk)
                    if len(buf) > max_bytes:
                        raise PayloadTooLarge(f"File is larger than {max_bytes // 1_000_000} MB.")
                upload = Upload(bytes(buf), part.filename)
            elif part.name:
                fields[part.name] = (await part.text())[:1000]
        if upload is None:
            raise ValidationError("No file in the upload.", fields={"file": ["No file."]})
        upload.fields = fields
        return upload
    data = await _read_limited(request.content, max_bytes)
    if not data:
        raise ValidationError("The upload is empty.", fields={"file": ["Empty file."]})
    return Upload(data, request.query.get("filename", ""), dict(request.query))
