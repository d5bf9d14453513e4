"""The one error middleware: every failure becomes the same JSON shape.

DRF-compatible bodies: ``{"detail": "...", "code": "..."}`` with field errors
as ``{"field": ["message"]}`` beside them. An unexpected exception is logged
with its traceback and answered with a plain 500 that reveals nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from node.errors import ExamnodeError

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_HTTP_CODES = {
    400: "bad_request", 401: "not_authenticated", 403: "permission_denied", 404: "not_found",
    405: "method_not_allowed", 406: "not_acceptable", 409: "conflict", 413: "too_large",
    415: "unsupported_media_type", 429: "throttled", 503: "unavailable",
}
_HTTP_DETAILS = {
    404: "Not found.", 405: "Method not allowed.", 413: "Request body too large.",
}


def error_response(status: int, body: dict[str, Any],
                   headers: dict[str, str] | None = None) -> web.Response:
    """Return a JSON error response."""
    return web.json_response(body, status=status, headers=headers)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Map every exception to one JSON error shape."""
    try:
        return await handler(request)
    except ExamnodeError as e:
        retry = getattr(e, "retry_after", None)
        headers = {"Retry-After": str(retry)} if retry is not None else {}
        if e.status == 401:
            headers["WWW-Authenticate"] = 'Bearer realm="api"'
        return error_response(e.status, e.body(), headers or None)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        code = _HTTP_CODES.get(e.status, "error")
        detail = _HTTP_DETAILS.get(e.status) or e.reason
        if e.status == 413:
            detail = f"Request body too large (at most {request.app[MAX_BODY]} bytes)."
        headers = {k: v for k, v in e.headers.items() if k.lower() in ("allow", "retry-after")}
        return error_response(e.status, {"detail": detail, "code": code}, headers)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, {"detail": "Internal server error.", "code": "server_error"})


MAX_BODY: web.AppKey[int] = web.AppKey("max_body", int)
