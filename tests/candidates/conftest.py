"""Fixtures of the candidate tests: real nodes on loopback, an HTTP client, file makers.

Nodes are built with the real CLI and run in the test's event loop
(``tests.replication.conftest.Cluster``), listening on 127.0.0.1 with mDNS
off. Each test module shares one node (module scope) and gives its
candidates roll numbers of its own. Every file a test uploads (photos,
documents, workbooks, zip bombs) is generated here at test time.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import io
import json
import struct
import sys
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import openpyxl
import pytest
import pytest_asyncio
from multidict import CIMultiDictProxy
from PIL import Image

from node.cli.main import main as cli_main
from tests.replication.conftest import CliResult, Cluster, Node

PASSWORD = "Sturdy-Lantern-42"
# Generous limits: one test module signs in and writes many times from 127.0.0.1.
AUTH = {"auth_rate": 100_000, "lockout_failures": 1000, "write_rate": 100_000,
        "access_ttl": 3600}
# Rules every shared node evaluates (ages on a fixed day, so the tests do not age).
RULES = {"min_age": 18, "max_age": 30, "age_reference_date": "2025-06-01",
         "require_documents_verified": True, "require_fee_paid": True}
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

# node/api/authn.py stores the principal under a str request key: aiohttp warns once per
# process (NotAppKeyWarning, an error under filterwarnings=error). Pinned by the auth tests.
NOT_APP_KEY = "ignore::aiohttp.web_exceptions.NotAppKeyWarning"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.filterwarnings(NOT_APP_KEY))


# --- the CLI with a password on standard input ---------------------------------------------


def _run_cli_stdin(args: list[str], stdin: str) -> CliResult:
    out, err = io.StringIO(), io.StringIO()
    saved = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = cli_main(args)
            except SystemExit as e:
                code = int(e.code or 0)
    finally:
        sys.stdin = saved
    return CliResult(code, out.getvalue(), err.getvalue())


async def cli(*args: str | Path, stdin: str = "") -> CliResult:
    """Run the examnode CLI in-process, off the event loop, with ``stdin`` as its input."""
    import asyncio

    return await asyncio.to_thread(_run_cli_stdin, [str(a) for a in args], stdin)


# --- HTTP ----------------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    body: Any  # parsed JSON, or None
    raw: bytes
    headers: CIMultiDictProxy[str]

    def __repr__(self) -> str:
        return f"<Reply {self.status} {self.body if self.body is not None else self.raw[:200]!r}>"


class Client:
    """One user's HTTP client of one node."""

    def __init__(self, http: aiohttp.ClientSession, base: str, token: str | None = None) -> None:
        self.http = http
        self.base = base
        self.token = token

    def on(self, node: Node) -> Client:
        """Return this user's client of another node."""
        return Client(self.http, node.api, self.token)

    async def request(self, method: str, path: str, *, json_body: Any = None,
                      data: Any = None, headers: dict[str, str] | None = None) -> Reply:
        hdrs = dict(headers or {})
        if self.token:
            hdrs["Authorization"] = f"Bearer {self.token}"
        async with self.http.request(method, self.base + path, json=json_body, data=data,
                                     headers=hdrs) as resp:
            raw = await resp.read()
            body = json.loads(raw) if raw and resp.content_type == "application/json" else None
            return Reply(resp.status, body, raw, resp.headers)

    async def get(self, path: str) -> Reply:
        return await self.request("GET", path)

    async def post(self, path: str, body: Any = None) -> Reply:
        return await self.request("POST", path, json_body=body)

    async def patch(self, path: str, body: Any) -> Reply:
        return await self.request("PATCH", path, json_body=body)

    async def put(self, path: str, body: Any) -> Reply:
        return await self.request("PUT", path, json_body=body)

    async def delete(self, path: str) -> Reply:
        return await self.request("DELETE", path)

    async def upload(self, path: str, content: bytes, filename: str = "file.bin",
                     content_type: str = "application/octet-stream", method: str = "POST",
                     fields: dict[str, str] | None = None) -> Reply:
        """Send ``content`` as the file part of a multipart/form-data body."""
        form = aiohttp.FormData()
        for k, v in (fields or {}).items():
            form.add_field(k, v)
        # A BytesIO: aiohttp warns that a large bytes body could block the loop.
        form.add_field("file", io.BytesIO(content), filename=filename,
                       content_type=content_type)
        return await self.request(method, path, data=form)

    async def raw(self, path: str, content: bytes, method: str = "POST",
                  content_type: str = "application/octet-stream") -> Reply:
        """Send ``content`` as the raw request body."""
        return await self.request(method, path, data=io.BytesIO(content),
                                  headers={"Content-Type": content_type})

    async def login(self, username: str, password: str = PASSWORD) -> Client:
        """Return a client signed in as ``username``."""
        anon = Client(self.http, self.base)
        r = await anon.post("/api/auth/login/", {"username": username, "password": password})
        assert r.status == 200, r
        return Client(self.http, self.base, r.body["access"])

    async def all(self, path: str) -> list[dict[str, Any]]:
        """Return every item of a list endpoint (one big page)."""
        sep = "&" if "?" in path else "?"
        r = await self.get(f"{path}{sep}page_size=500")
        assert r.status == 200, r
        assert r.body["next"] is None
        items: list[dict[str, Any]] = r.body["results"]
        return items

    async def import_file(self, content: bytes, query: str = "wait=true",
                          filename: str = "candidates.xlsx", raw: bool = False) -> Reply:
        """POST a file to the import endpoint (multipart unless ``raw``)."""
        path = f"/api/candidates/import/?{query}"
        if raw:
            return await self.raw(path, content)
        return await self.upload(path, content, filename=filename)


# --- a running node with an admin ----------------------------------------------------------


@dataclass
class Site:
    """A running node (a standalone centre, or an HQ) with its admin signed in."""

    cluster: Cluster
    node: Node
    admin: Client
    users: dict[str, Client] = field(default_factory=dict)

    def anon(self) -> Client:
        return Client(self.cluster.http, self.node.api)

    async def add_user(self, username: str, role: str, center: str | None) -> Client:
        """Register a user through the API and return its signed-in client."""
        r = await self.admin.post("/api/auth/register/", {
            "username": username, "password": PASSWORD, "role": role, "center": center})
        assert r.status == 201, r
        self.users[username] = await self.admin.login(username)
        return self.users[username]

    def log_entries(self) -> int:
        """Return how many deltas the node's store holds."""
        entries: int = self.node.store.stats()["log_entries"]
        return entries

    def blob_entries(self) -> int:
        """Return how many blobs (photos, documents) the node's store holds."""
        entries: int = self.node.store.stats()["blobs_entries"]
        return entries


def node_config(extra: dict[str, dict[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
    """Return the test node configuration (generous auth limits, fixed rules) plus ``extra``."""
    config: dict[str, dict[str, Any]] = {"auth": dict(AUTH), "candidates": dict(RULES)}
    for k, v in (extra or {}).items():
        config.setdefault(k, {}).update(v)
    return config


async def create_superuser(node: Node, username: str = "root") -> None:
    """Create the first admin with ``examnode createsuperuser --password-stdin``."""
    r = await cli("createsuperuser", "--data", node.data, "--username", username,
                  "--password-stdin", stdin=PASSWORD + "\n")
    assert r.code == 0, r.err


async def start_site(cluster: Cluster, name: str = "demo", *, center: str = "DEMO",
                     hq: bool = False, config: dict[str, dict[str, Any]] | None = None,
                     ) -> Site:
    """Init a node (centre ``center``, or an HQ), create its admin, start it, sign in."""
    node = await cluster.init(name, center=center, hq=hq, config=node_config(config))
    await create_superuser(node)
    await node.start()
    admin = await Client(cluster.http, node.api).login("root")
    return Site(cluster, node, admin)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def site(request: pytest.FixtureRequest,
               tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Site]:
    """A standalone centre DEMO node for a test module (``SITE_CONFIG`` of the module
    adds configuration)."""
    cluster = Cluster(tmp_path_factory.mktemp("site"))
    try:
        yield await start_site(cluster, config=getattr(request.module, "SITE_CONFIG", None))
    finally:
        await cluster.close()


# --- candidates ----------------------------------------------------------------------------


def candidate(roll_no: str, **fields: Any) -> dict[str, Any]:
    """Return a valid candidate body of centre DEMO (an eligible one unless changed)."""
    body: dict[str, Any] = {"roll_no": roll_no, "full_name": f"Candidate {roll_no}",
                            "date_of_birth": "2003-04-05", "gender": "female",
                            "center": "DEMO", "documents_verified": True, "fee_paid": True}
    body.update(fields)
    return body


async def create(client: Client, roll_no: str, **fields: Any) -> dict[str, Any]:
    """Create a candidate through the API and return it."""
    r = await client.post("/api/candidates/", candidate(roll_no, **fields))
    assert r.status == 201, r
    out: dict[str, Any] = r.body
    return out


# --- images and documents ------------------------------------------------------------------


def image_bytes(fmt: str, size: tuple[int, int] = (64, 48), color: str = "teal",
                **save: Any) -> bytes:
    """Return an image of ``size`` encoded as ``fmt`` (JPEG, PNG, WEBP, GIF)."""
    img = Image.new("RGB", size, color)
    out = io.BytesIO()
    img.save(out, format=fmt, **save)
    return out.getvalue()


def jpeg_with_exif(size: tuple[int, int] = (1200, 900)) -> bytes:
    """Return a JPEG with EXIF: orientation 6 (rotate 90) and a GPS position."""
    img = Image.new("RGB", size, "white")
    img.paste((200, 0, 0), (0, 0, size[0] // 2, size[1]))  # left half red
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW to display
    exif[0x010F] = "SpyCam"  # Make
    exif[0x8825] = {1: "N", 2: (12.0, 58.0, 34.56), 3: "E", 4: (77.0, 35.0, 40.12)}  # GPS IFD
    out = io.BytesIO()
    img.save(out, format="JPEG", exif=exif.tobytes(), quality=90)
    return out.getvalue()


def png_bomb(width: int = 20_000, height: int = 20_000) -> bytes:
    """Return a valid 1-bit PNG of width x height pixels that compresses to a few KB."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    row = b"\0" * (1 + (width + 7) // 8)  # filter byte + packed pixels
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat)
            + chunk(b"IEND", b""))


def minimal_pdf(text: str = "Hello") -> bytes:
    """Return a small valid one-page PDF (with an xref table, ending in %%EOF)."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for i, obj in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + obj + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for off in offsets:
        out += b"%010d 00000 n \n" % off
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1, xref)
    return bytes(out)


# --- spreadsheets --------------------------------------------------------------------------


def xlsx(rows: list[list[Any]], text_columns: tuple[int, ...] = ()) -> bytes:
    """Return an .xlsx whose first sheet holds ``rows`` (columns in ``text_columns`` get
    the text number format '@', as Excel gives numbers typed as text)."""
    wb = openpyxl.Workbook()
    ws = wb.active
    for r, row in enumerate(rows, start=1):
        for c, value in enumerate(row, start=1):
            if value is None:
                continue
            cell = ws.cell(row=r, column=c, value=value)
            if c - 1 in text_columns:
                cell.number_format = "@"
            elif isinstance(value, dt.date):
                cell.number_format = "DD/MM/YYYY"
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def read_xlsx(data: bytes) -> list[list[Any]]:
    """Return the rows of the first sheet of an .xlsx."""
    wb = openpyxl.load_workbook(io.BytesIO(data))
    try:
        return [list(r) for r in wb.worksheets[0].iter_rows(values_only=True)]
    finally:
        wb.close()


@functools.cache
def deflated_zeros(size: int, chunk: int = 1 << 22) -> tuple[bytes, int]:
    """Return (raw deflate stream, CRC-32) of ``size`` zero bytes, built without
    compressing them all: a fully flushed block of zeros repeats byte for byte."""
    assert size % chunk == 0
    block = (lambda c: c.compress(b"\0" * chunk) + c.flush(zlib.Z_FULL_FLUSH))(
        zlib.compressobj(9, zlib.DEFLATED, -15))
    tail = zlib.compressobj(9, zlib.DEFLATED, -15).flush()
    crc, zeros = 0, b"\0" * chunk
    for _ in range(size // chunk):
        crc = zlib.crc32(zeros, crc)
    return block * (size // chunk) + tail, crc


def zip_of(members: dict[str, bytes | int]) -> bytes:
    """Return a zip archive: bytes members are stored, int members are that many zero
    bytes, deflated."""
    out, central = io.BytesIO(), []
    for name, content in members.items():
        if isinstance(content, int):
            (data, crc), size, method = deflated_zeros(content), content, 8
        else:
            data, crc, size, method = content, zlib.crc32(content), len(content), 0
        offset, raw_name = out.tell(), name.encode()
        out.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, 0x21, crc,
                              len(data), size, len(raw_name), 0) + raw_name + data)
        central.append(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, method, 0,
                                   0x21, crc, len(data), size, len(raw_name), 0, 0, 0, 0, 0,
                                   offset) + raw_name)
    start = out.tell()
    for entry in central:
        out.write(entry)
    out.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(central), len(central),
                          out.tell() - start, start, 0))
    return out.getvalue()
