"""Routes that describe themselves: registration and OpenAPI 3.1 from one table.

Each API module declares its endpoints on a ``RouteTable`` with the pydantic
models of their body, query and response; ``openapi()`` builds the document
served at ``/api/schema/`` from exactly the routes that are registered.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from node.api.pagination import page_schema

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "DRF-compatible error: detail and a stable code; field errors beside them.",
    "required": ["detail", "code"],
    "properties": {"detail": {"type": "string"}, "code": {"type": "string"}},
    "additionalProperties": {"type": "array", "items": {"type": "string"}},
}


@dataclass
class Endpoint:
    method: str
    path: str
    handler: Handler
    summary: str
    tags: list[str]
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    paginated: bool = False
    status: int = 200
    auth: bool = True
    errors: list[int] = field(default_factory=list)


class RouteTable:
    """The endpoints of one API module."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.endpoints: list[Endpoint] = []

    def route(self, method: str, path: str, *, summary: str, **kw: Any) -> Callable[[Handler],
                                                                                 Handler]:
        """Declare ``handler`` as the endpoint ``method path``."""
        def wrap(handler: Handler) -> Handler:
            self.endpoints.append(Endpoint(method.upper(), path, handler, summary,
                                           [self.tag], **kw))
            return handler
        return wrap


def register(app: web.Application, tables: Iterable[RouteTable]) -> list[Endpoint]:
    """Add every endpoint of ``tables`` to ``app``; return them."""
    endpoints = [ep for t in tables for ep in t.endpoints]
    for ep in endpoints:
        app.router.add_route(ep.method, ep.path, ep.handler)
    return endpoints


def _schema(model: type[BaseModel], components: dict[str, Any], mode: str) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}",
                                     mode=mode)  # type: ignore[arg-type]
    for name, sub in schema.pop("$defs", {}).items():
        components[name] = sub
    components[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _query_params(model: type[BaseModel]) -> list[dict[str, Any]]:
    props = model.model_json_schema().get("properties", {})
    return [{"name": name, "in": "query", "required": False,
             "description": p.get("description", ""),
             "schema": {k: v for k, v in p.items() if k not in ("title", "description")}}
            for name, p in props.items()]


def openapi(endpoints: Iterable[Endpoint], *, title: str, version: str) -> dict[str, Any]:
    """Return the OpenAPI 3.1 document of ``endpoints``."""
    components: dict[str, Any] = {"Error": ERROR_SCHEMA}
    paths: dict[str, Any] = {}
    error_ref = {"$ref": "#/components/schemas/Error"}
    for ep in endpoints:
        op: dict[str, Any] = {"summary": ep.summary, "tags": ep.tags,
                              "operationId": ep.handler.__name__}
        params: list[dict[str, Any]] = [
            {"name": seg[1:-1], "in": "path", "required": True, "schema": {"type": "string"}}
            for seg in ep.path.split("/") if seg.startswith("{")]
        if ep.query is not None:
            params += _query_params(ep.query)
        if ep.paginated:
            params += [
                {"name": "page", "in": "query", "schema": {"type": "integer", "minimum": 1}},
                {"name": "page_size", "in": "query", "schema": {"type": "integer", "minimum": 1}},
            ]
        if params:
            op["parameters"] = params
        if ep.body is not None:
            op["requestBody"] = {"required": True, "content": {
                "application/json": {"schema": _schema(ep.body, components, "validation")}}}
        ok: dict[str, Any] = {"description": "OK"}
        if ep.response is not None:
            item = _schema(ep.response, components, "serialization")
            ok["content"] = {"application/json": {
                "schema": page_schema(item) if ep.paginated else item}}
        responses: dict[str, Any] = {str(ep.status): ok}
        for status in sorted({400, 413, *ep.errors} if ep.body else set(ep.errors)):
            responses[str(status)] = {"description": "Error",
                                      "content": {"application/json": {"schema": error_ref}}}
        if ep.auth:
            op["security"] = [{"bearerAuth": []}]
            responses.setdefault("401", {"description": "Not authenticated", "content": {
                "application/json": {"schema": error_ref}}})
        op["responses"] = responses
        paths.setdefault(ep.path, {})[ep.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version,
                 "description": "Examnode node API. Errors share one JSON shape (Error)."},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer",
                                               "bearerFormat": "JWT"}},
        },
    }
