"""Reading and writing candidate spreadsheets (.xlsx and .csv), safely.

Reading checks what a file *is*, not what it is called: an .xlsx is a zip
whose members are bounded in size and compression ratio (a zip bomb is
refused before openpyxl sees it); a CSV must be UTF-8 (with or without a
BOM), with a sniffed delimiter and bounded lines. Headers are matched to the
template's columns through a table of common names, plus a mapping given by
the person importing. Writing neutralises cells that a spreadsheet would
run as a formula.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from node.errors import PayloadTooLarge, UnsupportedMediaType, ValidationError

# The template: column -> common other names for it.
COLUMNS: dict[str, tuple[str, ...]] = {
    "roll_no": ("roll", "rollno", "rollnumber", "rollnum", "seatno", "candidateroll"),
    "registration_no": ("registration", "regno", "registrationnumber", "regnum", "applicationno"),
    "full_name": ("name", "fullname", "candidatename", "studentname", "nameofcandidate"),
    "date_of_birth": ("dob", "birthdate", "dateofbirth", "birthday"),
    "gender": ("sex",),
    "category": ("caste", "categorycode"),
    "email": ("mail", "emailaddress", "emailid"),
    "phone": ("mobile", "mobileno", "phoneno", "contact", "contactno", "telephone"),
    "address": ("postaladdress", "addr"),
    "center": ("centre", "centercode", "centrecode", "examcentre", "examcenter"),
    "registered_exams": ("exams", "exam", "papers", "subjects", "examcodes"),
    "extra_time_percent": ("extratime", "extratimepercent", "compensatorytime"),
    "scribe": ("needsscribe",),
    "large_print": ("largeprint",),
    "separate_room": ("separateroom",),
    "documents_verified": ("documentsverified", "docsverified", "verified"),
    "fee_paid": ("feepaid", "fees", "paid"),
    "status": ("candidatestatus",),
}
BOOLEAN = {"scribe", "large_print", "separate_room", "documents_verified", "fee_paid"}
MAX_UNZIPPED = 512 * 1024 * 1024
MAX_RATIO = 200
MAX_LINE = 64 * 1024
EXCEL_EPOCH = dt.date(1899, 12, 30)
DATE_FORMATS = ("%Y-%m-%d", "%d/%m/%Y", "%d-%m-%Y", "%d.%m.%Y", "%Y/%m/%d", "%d %b %Y",
                "%d %B %Y")
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _norm(header: Any) -> str:
    return re.sub(r"[^a-z0-9]", "", str(header or "").lower())


ALIASES = {_norm(c): c for c in COLUMNS} | {a: c for c, names in COLUMNS.items() for a in names}


@dataclass
class Sheet:
    """A parsed file: its header row and its data rows (row number, cells)."""

    headers: list[str]
    rows: list[tuple[int, list[Any]]]
    kind: str


def _check_zip(data: bytes) -> None:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            total = 0
            names = set()
            for info in zf.infolist():
                names.add(info.filename)
                total += info.file_size
                if info.file_size > 16 * 1024 * 1024 and \
                        info.file_size > MAX_RATIO * max(1, info.compress_size):
                    raise ValidationError("The workbook is a compression bomb; refused.")
            if total > MAX_UNZIPPED:
                raise ValidationError("The workbook unpacks to more than 512 MB; refused.")
            if "xl/workbook.xml" not in names:
                raise UnsupportedMediaType("The file is a zip archive but not an Excel workbook.")
    except zipfile.BadZipFile as e:
        raise UnsupportedMediaType("The file looks like a workbook but is damaged.") from e


def _read_xlsx(data: bytes, max_rows: int) -> Sheet:
    import openpyxl

    _check_zip(data)
    try:
        wb = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as e:  # openpyxl raises many kinds on a bad workbook
        raise ValidationError(f"The workbook cannot be read: {type(e).__name__}.") from e
    try:
        ws = wb.worksheets[0]
        # Trust the cells, not the sheet's declared dimensions (a tiny file can claim
        # 1,048,576 rows x 16,384 columns and make openpyxl pad every row).
        ws.reset_dimensions()
        it = ws.iter_rows(values_only=True)
        headers: list[str] = []
        rows: list[tuple[int, list[Any]]] = []
        scanned = 0
        for n, row in enumerate(it, start=1):
            scanned += 1
            if scanned > 2 * max_rows + 1000:
                raise PayloadTooLarge(f"The file has more than {max_rows} rows.")
            values = list(row)
            if not headers:
                if any(v not in (None, "") for v in values):
                    headers = [str(v).strip() if v is not None else "" for v in values]
                    while headers and not headers[-1]:
                        headers.pop()
                continue
            values = values[:len(headers)]
            if all(v is None or (isinstance(v, str) and not v.strip()) for v in values):
                continue  # blank rows
            rows.append((n, values))
            if len(rows) > max_rows:
                raise PayloadTooLarge(f"The file has more than {max_rows} rows.")
    finally:
        wb.close()
    return Sheet(headers, rows, "xlsx")


def _read_csv(data: bytes, max_rows: int) -> Sheet:
    if b"\x00" in data[:65536]:
        raise UnsupportedMediaType("The file is neither a CSV text file nor an Excel workbook.")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValidationError("A CSV file must be UTF-8 (save it as 'CSV UTF-8').") from e
    lines = text.splitlines()
    if any(len(line) > MAX_LINE for line in lines):
        raise ValidationError(f"A line of the CSV file is longer than {MAX_LINE} characters.")
    sample = "\n".join(lines[:50])
    try:
        delimiter = csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except csv.Error:
        delimiter = ","
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    headers: list[str] = []
    rows: list[tuple[int, list[Any]]] = []
    try:
        for n, row in enumerate(reader, start=1):
            if not headers:
                if any(c.strip() for c in row):
                    headers = [c.strip() for c in row]
                continue
            if not any(c.strip() for c in row):
                continue
            rows.append((n, list(row)[:len(headers)]))
            if len(rows) > max_rows:
                raise PayloadTooLarge(f"The file has more than {max_rows} rows.")
    except csv.Error as e:
        raise ValidationError(f"The CSV file is malformed: {e}.") from e
    return Sheet(headers, rows, "csv")


def read_sheet(data: bytes, max_rows: int) -> Sheet:
    """Parse an uploaded .xlsx or .csv by its content."""
    if not data.strip():
        raise ValidationError("The file is empty.")
    if data.startswith(b"PK\x03\x04"):
        sheet = _read_xlsx(data, max_rows)
    elif data.startswith(b"\xd0\xcf\x11\xe0"):
        raise UnsupportedMediaType("Old .xls workbooks are not supported; save it as .xlsx.")
    else:
        sheet = _read_csv(data, max_rows)
    if not sheet.headers:
        raise ValidationError("The file has no header row.")
    return sheet


def map_headers(headers: list[str], mapping: dict[str, str]) -> tuple[dict[int, str], list[str]]:
    """Return {column index: template field} and the headers that were ignored."""
    user = {_norm(k): v for k, v in mapping.items()}
    for field in user.values():
        if field not in COLUMNS:
            raise ValidationError("Invalid mapping.", fields={"map": [f"Unknown column "
                                                                      f"{field}."]})
    out: dict[int, str] = {}
    ignored = []
    for i, h in enumerate(headers):
        found = user.get(_norm(h)) or ALIASES.get(_norm(h))
        if found and found not in out.values():
            out[i] = found
        elif h:
            ignored.append(h)
    return out, ignored


def _date(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, int | float) and not isinstance(value, bool):
        if 1 <= value < 80000:  # an Excel serial day number
            return (EXCEL_EPOCH + dt.timedelta(days=int(value))).isoformat()
        return str(value)
    text = str(value).strip()
    for fmt in DATE_FORMATS:
        try:
            return dt.datetime.strptime(text, fmt).date().isoformat()
        except ValueError:
            continue
    return text  # left for validation to refuse with a clear message


def _bool(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("yes", "y", "true", "1", "1.0", "paid", "verified", "x"):
        return True
    if text in ("no", "n", "false", "0", "0.0", ""):
        return False
    return value


def cell_text(value: Any) -> str:
    """Return a cell as text; whole numbers lose their '.0' (roll numbers).

    A leading ``'`` that our own export added to neutralise a formula is removed,
    so exported and rejected-row files import back unchanged.
    """
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    text = str(value).strip()
    if text.startswith("'") and text[1:2] in FORMULA_START and len(text) > 1:
        text = text[1:]
    return text


def row_fields(cells: list[Any], columns: dict[int, str]) -> dict[str, Any]:
    """Turn one row's cells into candidate fields (normalised, empty cells omitted)."""
    out: dict[str, Any] = {}
    acc: dict[str, Any] = {}
    for i, field in columns.items():
        value = cells[i] if i < len(cells) else None
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        if field == "date_of_birth":
            out[field] = _date(value)
        elif field in BOOLEAN:
            (acc if field in ("scribe", "large_print", "separate_room") else out)[field] = \
                _bool(value)
        elif field == "extra_time_percent":
            acc[field] = cell_text(value)
        elif field == "gender":
            g = cell_text(value).lower()
            out[field] = {"f": "female", "m": "male", "o": "other"}.get(g, g)
        elif field in ("status",):
            out[field] = cell_text(value).lower()
        else:
            out[field] = cell_text(value)
    if acc:
        out["accommodations"] = acc
    return out


def neutralise(value: Any) -> Any:
    """Return a cell value that no spreadsheet will run as a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def write_xlsx(headers: list[str], rows: Iterator[list[Any]]) -> bytes:
    """Return an .xlsx of ``rows`` (formula-neutralised)."""
    import openpyxl

    wb = openpyxl.Workbook(write_only=True)
    ws = wb.create_sheet("candidates")
    ws.append(headers)
    for row in rows:
        ws.append([neutralise(v) for v in row])
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def write_csv(headers: list[str], rows: Iterator[list[Any]]) -> bytes:
    """Return a UTF-8 (BOM, for Excel) CSV of ``rows`` (formula-neutralised)."""
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(headers)
    for row in rows:
        w.writerow([neutralise(v) if v is not None else "" for v in row])
    return ("\ufeff" + out.getvalue()).encode("utf-8")
