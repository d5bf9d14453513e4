"""Export of candidates to .xlsx or .csv, in the import template's columns."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from node.services.auth.permissions import Principal
from node.services.candidates.records import Candidates
from node.services.candidates.tabular import COLUMNS, write_csv, write_xlsx

ACCOMMODATIONS = ("extra_time_percent", "scribe", "large_print", "separate_room")
HEADERS = [*COLUMNS, "eligibility", "eligibility_reasons"]


def _row(c: dict[str, Any]) -> list[Any]:
    acc = c.get("accommodations") or {}
    out = []
    for col in COLUMNS:
        if col in ACCOMMODATIONS:
            out.append(acc.get(col))
        elif col == "registered_exams":
            out.append(", ".join(c.get(col) or []))
        else:
            out.append(c.get(col))
    eligibility = c.get("eligibility") or {}
    out += [eligibility.get("status"), "; ".join(eligibility.get("reasons") or [])]
    return out


def export(candidates: Candidates, actor: Principal, query: dict[str, str],
           fmt: str) -> tuple[bytes, str]:
    """Return (file bytes, media type) of the candidates in reach, with list filters."""
    items = candidates.query(actor, {k: v for k, v in query.items() if k != "format"},
                             action="candidates.export")
    rows: Iterator[list[Any]] = (_row(c) for c in items)
    if fmt == "csv":
        return write_csv(HEADERS, rows), "text/csv; charset=utf-8"
    return write_xlsx(HEADERS, rows), \
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
