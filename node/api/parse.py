"""Turning requests into validated pydantic models, with DRF-shaped errors."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from node.errors import PayloadTooLarge, UnsupportedMediaType, field_errors
from node.errors import ValidationError as InvalidInput

M = TypeVar("M", bound=BaseModel)


def validate(model: type[M], data: Any) -> M:
    """Validate ``data`` as ``model``, raising a 400 with field errors."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise InvalidInput("Invalid input.", fields=field_errors(e)) from e


async def parse_json(request: web.Request, model: type[M]) -> M:
    """Read a JSON body and validate it as ``model``."""
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge as e:
        raise PayloadTooLarge(
            f"Request body too large (at most {request.client_max_size} bytes).") from e
    ctype = request.content_type
    if raw and ctype not in ("application/json", "") and not ctype.endswith("+json"):
        raise UnsupportedMediaType(f'Unsupported media type "{ctype}" in request.')
    if not raw:
        data: Any = {}
    else:
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise InvalidInput(f"JSON parse error - {e}") from e
    if not isinstance(data, dict):
        raise InvalidInput("Expected a JSON object.")
    return validate(model, data)


def parse_query(request: web.Request, model: type[M]) -> M:
    """Validate the query string as ``model`` (unknown parameters are ignored)."""
    return validate(model, dict(request.query))
