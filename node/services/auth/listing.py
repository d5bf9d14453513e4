"""List conventions shared by the account endpoints: filter, search, ordering."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from typing import Any

from node.errors import ValidationError


def _truthy(text: str) -> bool | None:
    lowered = text.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    return None


def _sort_key(field: str) -> Any:
    def key(item: dict[str, Any]) -> tuple[bool, Any]:
        value = item.get(field)
        return (value is None, value if value is not None else "")
    return key


def apply_query(items: Iterable[dict[str, Any]], query: dict[str, str], *,
                filters: set[str], search: tuple[str, ...],
                orderings: set[str], default: str,
                booleans: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
    """Filter (``?field=``), search (``?search=``) and order (``?ordering=``) dicts."""
    out = list(items)
    for name in filters:
        if name not in query:
            continue
        raw = query[name]
        if name.startswith("is_") or name in booleans:
            flag = _truthy(raw)
            if flag is None:
                raise ValidationError("Invalid filter.", fields={name: ["Must be true or false."]})
            out = [o for o in out if bool(o.get(name)) is flag]
        else:
            out = [o for o in out if str(o.get(name) or "") == raw]
    term = unicodedata.normalize("NFC", query.get("search", "")).strip().lower()
    if term:
        out = [o for o in out if any(term in str(o.get(f) or "").lower() for f in search)]
    ordering = query.get("ordering", default)
    keys = [k.strip() for k in ordering.split(",") if k.strip()]
    for key in reversed(keys):
        field = key.lstrip("-")
        if field not in orderings:
            raise ValidationError("Invalid ordering.", fields={"ordering": [
                f"Choose from: {', '.join(sorted(orderings))}."]})
        out.sort(key=_sort_key(field), reverse=key.startswith("-"))
    return out
