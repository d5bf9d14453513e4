"""DRF-style page-number pagination: ``count``, ``next``, ``previous``, ``results``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from node.errors import NotFound
from node.errors import ValidationError as InvalidInput


class PageParams(BaseModel):
    model_config = ConfigDict(extra="ignore")
    page: int = Field(1, ge=1, description="Page number, from 1.")
    page_size: int | None = Field(None, ge=1, description="Items per page.")


def page_params(request: web.Request, default_size: int, max_size: int) -> tuple[int, int]:
    """Return (page, page_size) from the query, validated against the limits."""
    from node.api.parse import parse_query

    params = parse_query(request, PageParams)
    size = params.page_size or default_size
    if size > max_size:
        raise InvalidInput("Invalid page size.", fields={"page_size": [
            f"Ensure this value is less than or equal to {max_size}."]})
    return params.page, size


def _link(request: web.Request, page: int) -> str:
    return str(request.url.update_query(page=str(page)))


def paginate(request: web.Request, items: Sequence[Any], default_size: int,
             max_size: int) -> dict[str, Any]:
    """Return one page of ``items`` in DRF's shape; 404 past the last page."""
    page, size = page_params(request, default_size, max_size)
    count = len(items)
    last = max(1, -(-count // size))
    if page > last:
        raise NotFound("Invalid page.")
    start = (page - 1) * size
    return {
        "count": count,
        "next": _link(request, page + 1) if page < last else None,
        "previous": _link(request, page - 1) if page > 1 else None,
        "results": list(items[start : start + size]),
    }


def page_schema(item_schema: dict[str, Any]) -> dict[str, Any]:
    """Return the OpenAPI schema of a page of ``item_schema``."""
    return {
        "type": "object",
        "required": ["count", "next", "previous", "results"],
        "properties": {
            "count": {"type": "integer"},
            "next": {"type": ["string", "null"], "format": "uri"},
            "previous": {"type": ["string", "null"], "format": "uri"},
            "results": {"type": "array", "items": item_schema},
        },
    }
