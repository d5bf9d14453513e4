"""Bulk import of candidates: validate every row, upsert by roll number, report.

An import is a job with a progress resource. Every row is validated; rows
that fail (and every row of a roll number that appears twice in the file)
are rejected into a workbook with the original cells and an ``error``
column, which a person can fix and import again. Re-importing the same file
changes nothing (each row is compared with the stored record).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError as PydanticError

from node.errors import ExamnodeError, NotFound, ValidationError, field_errors
from node.services.auth.permissions import Principal, Role, check
from node.services.candidates.models import CandidateIn
from node.services.candidates.records import Candidates
from node.services.candidates.tabular import map_headers, read_sheet, row_fields, write_xlsx

log = logging.getLogger(__name__)

CHUNK = 200
KEEP_JOBS = 50


@dataclass
class ImportJob:
    """One import and its progress."""

    id: str
    owner: str
    center: str | None
    filename: str
    dry_run: bool
    status: str = "queued"  # queued, running, done, failed
    total: int = 0
    processed: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    ignored_columns: list[str] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)  # first 100 rejections
    detail: str = ""
    error_status: int = 0  # when the whole file was refused: the HTTP status and code
    error_code: str = ""
    started: float = field(default_factory=time.time)
    finished: float | None = None
    rejected_xlsx: bytes | None = None

    def report(self) -> dict[str, Any]:
        """Return the job as the API shows it."""
        out = {k: v for k, v in vars(self).items() if k != "rejected_xlsx"}
        out["has_rejected_file"] = self.rejected_xlsx is not None
        return out


def _error_text(e: Exception) -> str:
    if isinstance(e, PydanticError):
        return "; ".join(f"{k}: {' '.join(v)}" for k, v in field_errors(e).items())
    if isinstance(e, ExamnodeError):
        extra = "; ".join(f"{k}: {' '.join(v)}" for k, v in e.fields.items())
        generic = e.detail in ("Invalid input.", "")
        return (extra if generic else f"{e.detail} ({extra})" if extra else e.detail) or \
            e.detail
    return str(e)


class Importer:
    """Import jobs of one node (kept in memory; the data itself is in the store)."""

    def __init__(self, candidates: Candidates) -> None:
        self.candidates = candidates
        self.jobs: dict[str, ImportJob] = {}
        self._tasks: set[asyncio.Task[ImportJob]] = set()

    def get(self, actor: Principal, job_id: str) -> ImportJob:
        """Return a job the actor started (admins see all)."""
        job = self.jobs.get(job_id)
        if job is None or (actor.role is not Role.ADMIN and job.owner != actor.username):
            raise NotFound("Not found.")
        return job

    def start(self, actor: Principal | None, data: bytes, *, filename: str, dry_run: bool,
              center: str | None, mapping: dict[str, str]) -> ImportJob:
        """Start an import job in the background and return it."""
        if actor is not None:
            check(actor, "candidates.import")
            if actor.role is not Role.ADMIN:
                center = actor.center
        if center is None:
            node = self.candidates.ctx
            if node.trust is None or node.trust.me.role != "hq":
                center = node.center  # rows without a centre belong to this node's centre
        job = ImportJob(uuid.uuid4().hex, actor.username if actor else "", center, filename,
                        dry_run)
        self.jobs[job.id] = job
        while len(self.jobs) > KEEP_JOBS:
            oldest = min(self.jobs.values(), key=lambda j: j.started)
            del self.jobs[oldest.id]
        task = asyncio.create_task(self.run(job, actor, data, mapping), name=f"import-{job.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job

    async def stop(self) -> None:
        """Cancel running imports (node shutdown)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def run(self, job: ImportJob, actor: Principal | None, data: bytes,
                  mapping: dict[str, str],
                  progress: Callable[[ImportJob], None] | None = None) -> ImportJob:
        """Run an import to the end; never raises (the job records a failure)."""
        job.status = "running"
        try:
            await self._run(job, actor, data, mapping, progress)
            job.status = "done"
        except ExamnodeError as e:
            job.status, job.detail = "failed", _error_text(e)
            job.error_status, job.error_code = e.status, e.code
        except Exception:
            log.exception("import %s failed", job.id)
            job.status, job.detail = "failed", "internal error; see the node's log"
        job.finished = time.time()
        if progress is not None:
            progress(job)
        log.info("import %s %s: %d created, %d updated, %d unchanged, %d rejected", job.id,
                 job.status, job.created, job.updated, job.unchanged, job.rejected)
        return job

    async def _run(self, job: ImportJob, actor: Principal | None, data: bytes,
                   mapping: dict[str, str], progress: Callable[[ImportJob], None] | None,
                   ) -> None:
        rules = self.candidates.rules
        sheet = await asyncio.to_thread(read_sheet, data, rules.import_max_rows)
        columns, job.ignored_columns = map_headers(sheet.headers, mapping)
        if "roll_no" not in columns.values() or "full_name" not in columns.values():
            raise ValidationError("The file needs a roll number and a name column.", fields={
                "file": [f"Columns found: {', '.join(sheet.headers)}."]})
        job.total = len(sheet.rows)
        parsed: list[tuple[int, list[Any], dict[str, Any]]] = []
        for n, cells in sheet.rows:
            fields = row_fields(cells, columns)
            if job.center and not fields.get("center"):
                fields["center"] = job.center
            parsed.append((n, cells, fields))
        counts = Counter(str(f.get("roll_no", "")) for _, _, f in parsed)
        first_row: dict[str, int] = {}
        for n, _, f in parsed:
            first_row.setdefault(str(f.get("roll_no", "")), n)
        rejected: list[list[Any]] = []

        width = len(sheet.headers)

        def reject(n: int, cells: list[Any], error: str) -> None:
            job.rejected += 1
            rejected.append([*(list(cells) + [None] * width)[:width], error])
            if len(job.errors) < 100:
                job.errors.append({"row": n, "error": error})

        pending: list[tuple[int, list[Any], CandidateIn]] = []
        for n, cells, fields in parsed:
            roll = str(fields.get("roll_no", ""))
            try:
                if roll and counts[roll] > 1:
                    raise ValidationError(f"roll number {roll} appears {counts[roll]} times in "
                                          f"this file (first on row {first_row[roll]})")
                body = CandidateIn.model_validate(fields)
                if actor is not None and actor.role is not Role.ADMIN and \
                        body.center != actor.center:
                    raise ValidationError(f"centre {body.center} is not your centre")
                pending.append((n, cells, body))
            except (PydanticError, ExamnodeError) as e:
                reject(n, cells, _error_text(e))
                job.processed += 1
        async def collect(chunk: list[tuple[int, list[Any], CandidateIn]],
                          tasks: list[asyncio.Task[str]]) -> None:
            results = await asyncio.gather(*tasks, return_exceptions=True)
            for (n, cells, _), result in zip(chunk, results, strict=True):
                job.processed += 1
                if isinstance(result, BaseException):
                    if not isinstance(result, Exception | PydanticError):
                        raise result
                    reject(n, cells, _error_text(result))
                else:
                    setattr(job, result, getattr(job, result) + 1)
            if progress is not None:
                progress(job)

        # Two chunks in flight: the writer always has a full batch queued.
        previous: tuple[Any, Any] | None = None
        for start in range(0, len(pending), CHUNK):
            chunk = pending[start:start + CHUNK]
            tasks = [asyncio.create_task(self._one(actor, b, job.dry_run)) for _, _, b in chunk]
            if previous is not None:
                await collect(*previous)
            previous = (chunk, tasks)
        if previous is not None:
            await collect(*previous)
        if rejected:
            job.rejected_xlsx = await asyncio.to_thread(
                write_xlsx, [*sheet.headers, "error"], iter(rejected))

    async def _one(self, actor: Principal | None, body: CandidateIn, dry_run: bool) -> str:
        if dry_run:  # the same checks as a real import, nothing written
            return self.candidates.plan_upsert(actor, body)[0]
        return await self.candidates.upsert(actor, body)
