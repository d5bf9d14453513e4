"""Candidate endpoints: profiles, photo, documents, import jobs and export."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from node.api.authn import limit_write, principal
from node.api.keys import NODE
from node.api.pagination import paginate
from node.api.parse import parse_json, parse_query
from node.api.routing import RouteTable
from node.api.uploads import read_upload
from node.errors import Unavailable, ValidationError
from node.services.candidates import CandidateServices
from node.services.candidates.exporter import export
from node.services.candidates.models import CandidateIn, CandidateOut, CandidatePatch

routes = RouteTable("candidates")


def _svc(request: web.Request) -> CandidateServices:
    svc: CandidateServices | None = request.app[NODE].candidates
    if svc is None:
        raise Unavailable("candidates are not available on this node")
    return svc


class ImportQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")
    dry_run: bool = Field(False, description="Validate and count, write nothing.")
    center: str | None = Field(None, description="Centre for rows without one (admins).")
    map: str | None = Field(None, description='Header mapping, JSON: {"Cand Name": '
                                              '"full_name"}.')
    wait: bool = Field(False, description="Answer when the import has finished.")


class ExportQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")
    format: str = Field("xlsx", pattern=r"^(xlsx|csv)$")


@routes.route("GET", "/api/candidates/", summary="List candidates", response=CandidateOut,
              paginated=True, errors=[403])
async def list_candidates(request: web.Request) -> web.Response:
    who = principal(request)
    cfg = request.app[NODE].config.http
    items = _svc(request).records.query(who, dict(request.query))
    return web.json_response(paginate(request, items, cfg.page_size, cfg.max_page_size))


@routes.route("POST", "/api/candidates/", summary="Create a candidate", body=CandidateIn,
              response=CandidateOut, status=201, errors=[403, 409])
async def create_candidate(request: web.Request) -> web.Response:
    who = principal(request)
    limit_write(request, who)
    body = await parse_json(request, CandidateIn)
    return web.json_response(await _svc(request).records.create(who, body), status=201)


@routes.route("POST", "/api/candidates/import/", summary="Import candidates from .xlsx/.csv",
              query=ImportQuery, errors=[403, 413, 415])
async def import_candidates(request: web.Request) -> web.Response:
    who = principal(request)
    limit_write(request, who)
    q = parse_query(request, ImportQuery)
    try:
        mapping: Any = json.loads(q.map) if q.map else {}
    except json.JSONDecodeError as e:
        raise ValidationError("Invalid mapping.", fields={"map": [str(e)]}) from e
    if not isinstance(mapping, dict) or not all(isinstance(v, str) for v in mapping.values()):
        raise ValidationError("Invalid mapping.", fields={"map": ["Expected a JSON object."]})
    svc = _svc(request)
    limit = int(svc.records.rules.import_max_mb * 1_000_000)
    upload = await read_upload(request, limit)
    job = svc.importer.start(who, upload.data, filename=upload.filename, dry_run=q.dry_run,
                             center=q.center, mapping=mapping)
    if q.wait:
        while job.status in ("queued", "running"):
            await _sleep()
        if job.status == "failed" and job.error_status:
            # The whole file was refused: answer as any refused request does.
            return web.json_response({"detail": job.detail, "code": job.error_code,
                                      "job": job.id}, status=job.error_status)
        return web.json_response(job.report())
    return web.json_response(job.report(), status=202,
                             headers={"Location": f"/api/candidates/import/{job.id}/"})


async def _sleep() -> None:
    import asyncio

    await asyncio.sleep(0.05)


@routes.route("GET", "/api/candidates/import/{job}/", summary="Progress of an import",
              errors=[404])
async def import_status(request: web.Request) -> web.Response:
    who = principal(request)
    return web.json_response(_svc(request).importer.get(who, request.match_info["job"]).report())


@routes.route("GET", "/api/candidates/import/{job}/rejected.xlsx/",
              summary="Rejected rows of an import, with an error column", errors=[404])
async def import_rejected(request: web.Request) -> web.Response:
    who = principal(request)
    job = _svc(request).importer.get(who, request.match_info["job"])
    if job.rejected_xlsx is None:
        from node.errors import NotFound

        raise NotFound("This import rejected no rows.")
    return web.Response(body=job.rejected_xlsx, content_type=(
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
        headers={"Content-Disposition": f'attachment; filename="rejected-{job.id[:8]}.xlsx"'})


@routes.route("GET", "/api/candidates/export/", summary="Export candidates (.xlsx or .csv)",
              query=ExportQuery, errors=[403])
async def export_candidates(request: web.Request) -> web.Response:
    who = principal(request)
    q = parse_query(request, ExportQuery)
    import asyncio

    data, media = await asyncio.to_thread(export, _svc(request).records, who,
                                          dict(request.query), q.format)
    return web.Response(body=data, headers={
        "Content-Type": media,
        "Content-Disposition": f'attachment; filename="candidates.{q.format}"'})


@routes.route("GET", "/api/candidates/{id}/", summary="Candidate details",
              response=CandidateOut, errors=[403, 404])
async def get_candidate(request: web.Request) -> web.Response:
    who = principal(request)
    return web.json_response(_svc(request).records.read(who, request.match_info["id"]))


async def _update(request: web.Request, model: type[CandidateIn] | type[CandidatePatch],
                  ) -> web.Response:
    who = principal(request)
    limit_write(request, who)
    body = await parse_json(request, model)
    out = await _svc(request).records.update(who, request.match_info["id"], body)
    return web.json_response(out)


@routes.route("PUT", "/api/candidates/{id}/", summary="Replace a candidate", body=CandidateIn,
              response=CandidateOut, errors=[403, 404])
async def put_candidate(request: web.Request) -> web.Response:
    return await _update(request, CandidateIn)


@routes.route("PATCH", "/api/candidates/{id}/", summary="Change a candidate",
              body=CandidatePatch, response=CandidateOut, errors=[403, 404])
async def patch_candidate(request: web.Request) -> web.Response:
    return await _update(request, CandidatePatch)


@routes.route("DELETE", "/api/candidates/{id}/", summary="Delete a candidate", status=204,
              errors=[403, 404])
async def delete_candidate(request: web.Request) -> web.Response:
    who = principal(request)
    limit_write(request, who)
    await _svc(request).records.delete(who, request.match_info["id"])
    return web.Response(status=204)


@routes.route("PUT", "/api/candidates/{id}/photo/", summary="Upload the candidate's photo",
              errors=[403, 404, 413, 415])
async def put_photo(request: web.Request) -> web.Response:
    who = principal(request)
    limit_write(request, who)
    svc = _svc(request)
    upload = await read_upload(request, int(svc.records.rules.photo_max_mb * 1_000_000))
    return web.json_response(await svc.media.put_photo(who, request.match_info["id"],
                                                       upload.data))


@routes.route("GET", "/api/candidates/{id}/photo/", summary="The candidate's photo "
              "(?size=thumb for the thumbnail)", errors=[403, 404])
async def get_photo(request: web.Request) -> web.Response:
    who = principal(request)
    data = _svc(request).media.get_photo(who, request.match_info["id"],
                                         request.query.get("size") == "thumb")
    return web.Response(body=data, content_type="image/jpeg",
                        headers={"Cache-Control": "private, no-store"})


@routes.route("GET", "/api/candidates/{id}/documents/", summary="The candidate's documents",
              errors=[403, 404])
async def list_documents(request: web.Request) -> web.Response:
    who = principal(request)
    return web.json_response(_svc(request).media.list_documents(who, request.match_info["id"]))


@routes.route("POST", "/api/candidates/{id}/documents/", summary="Add a document (multipart: "
              "file and type)", status=201, errors=[403, 404, 413, 415])
async def add_document(request: web.Request) -> web.Response:
    who = principal(request)
    limit_write(request, who)
    svc = _svc(request)
    upload = await read_upload(request, int(svc.records.rules.document_max_mb * 1_000_000))
    doc = await svc.media.add_document(who, request.match_info["id"],
                                       upload.fields.get("type", ""), upload.filename,
                                       upload.data)
    return web.json_response(doc, status=201)


@routes.route("GET", "/api/candidates/{id}/documents/{doc}/", summary="Download a document",
              errors=[403, 404])
async def get_document(request: web.Request) -> web.Response:
    who = principal(request)
    meta, data = _svc(request).media.get_document(who, request.match_info["id"],
                                                  request.match_info["doc"])
    return web.Response(body=data, headers={
        "Content-Type": meta["content_type"],
        "Content-Disposition": f'attachment; filename="{meta["filename"]}"'})


@routes.route("DELETE", "/api/candidates/{id}/documents/{doc}/", summary="Remove a document",
              status=204, errors=[403, 404])
async def delete_document(request: web.Request) -> web.Response:
    who = principal(request)
    limit_write(request, who)
    await _svc(request).media.remove_document(who, request.match_info["id"],
                                              request.match_info["doc"])
    return web.Response(status=204)
